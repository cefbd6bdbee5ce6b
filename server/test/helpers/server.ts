import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ApiError } from '@vdi/shared';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createServer, type ServerDeps, type VdiServer } from '../../src/app.js';
import type { AnswerOf, Method } from './answers.js';

export const ADMIN = { username: 'admin', password: 'admin-password-1' };

export interface TestServer {
  server: VdiServer;
  url: string;
  dataDir: string;
  close(): Promise<void>;
}

/** A temp data dir, short run dir (unix socket paths are limited to 107 bytes). */
export function tempDirs(tag = 'vdi'): { dataDir: string; runDir: string } {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `${tag}-data-`));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), `${tag}r-`));
  return { dataDir, runDir };
}

export function testConfig(env: Record<string, string> = {}, dirs = tempDirs()): Config {
  return loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dirs.dataDir,
    RUN_DIR: dirs.runDir,
    VDI_ADMIN_USER: ADMIN.username,
    VDI_ADMIN_PASSWORD: ADMIN.password,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    BROKER_TICK_MS: '60000',
    ...env,
  });
}

/** Start the whole server in-process on port 0. */
export async function startServer(
  config: Config = testConfig(),
  deps: ServerDeps = {},
): Promise<TestServer> {
  const server = await createServer(config, { logger: pino({ level: config.logLevel }), ...deps });
  const port = await server.listen();
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    dataDir: config.dataDir,
    close: () => server.close(),
  };
}

/**
 * A REST answer. `body` is the parsed JSON of the route's answer, typed from shared/ (see
 * answers.ts) for a call that succeeded; when it failed, `error` holds the error answer.
 */
export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
  error: ApiError['error'] | undefined;
  headers: Headers;
}

/** A tiny cookie-keeping REST client. */
export class Api {
  cookie = '';
  constructor(readonly base: string) {}

  async call<M extends Method, P extends string>(
    method: M,
    p: P,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<ApiAnswer<AnswerOf<M, P>>> {
    const headers: Record<string, string> = { 'x-requested-with': 'vdi', ...extraHeaders };
    if (this.cookie) headers.cookie = this.cookie;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(this.base + p, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const set = r.headers.get('set-cookie');
    if (set) this.cookie = set.split(';')[0]!;
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    const failed = r.status >= 400 ? ApiError.safeParse(parsed) : undefined;
    return {
      status: r.status,
      body: parsed as AnswerOf<M, P>,
      error: failed?.success ? failed.data.error : undefined,
      headers: r.headers,
    };
  }

  get<P extends string>(p: P) {
    return this.call('GET', p);
  }
  post<P extends string>(p: P, body?: unknown) {
    return this.call('POST', p, body);
  }
  patch<P extends string>(p: P, body?: unknown) {
    return this.call('PATCH', p, body);
  }
  put<P extends string>(p: P, body?: unknown) {
    return this.call('PUT', p, body);
  }
  del<P extends string>(p: P) {
    return this.call('DELETE', p);
  }

  /**
   * Creates a pool (the admin API's body) and entitles the signed-in account to it; its id.
   * Throws with the server's answer when either is refused.
   */
  async entitledPool(body: Record<string, unknown>): Promise<string> {
    const me = (await this.get('/api/auth/me')).body as { id: string };
    const pool = await this.post('/api/admin/pools', body);
    if (pool.status !== 201) throw new Error(`pool refused: ${JSON.stringify(pool.body)}`);
    const poolId = (pool.body as { id: string }).id;
    const ent = await this.post('/api/admin/entitlements', {
      poolId,
      principalType: 'user',
      principalId: me.id,
    });
    if (ent.status !== 201) throw new Error(`entitlement refused: ${JSON.stringify(ent.body)}`);
    return poolId;
  }

  async login(username: string, password: string): Promise<this> {
    const r = await this.post('/api/auth/login', { username, password });
    if (r.status !== 200)
      throw new Error(`login ${username} failed: ${r.status} ${JSON.stringify(r.body)}`);
    return this;
  }
}

/**
 * Poll every `intervalMs` until `probe` returns a value other than undefined/false, or fail
 * after `ms` (with the probe's last error, if it threw).
 */
export async function until<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 10_000,
  what = 'condition',
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
