/**
 * What the viewer-media e2e tests share (files, published applications, sound): the server
 * process with an admin API, pools made through it, a user's viewer on a session, and
 * commands run in a desktop as its own account.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { ConnectResult, Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium } from './browser.js';
import { alive, homeInside } from './desktops.js';
import { ServerProcess, freePort, readStore } from './process-server.js';
import { ADMIN, Api } from './server.js';

const run = promisify(execFile);
export const API_HEADERS = { 'x-requested-with': 'vdi' };

export interface ViewerHook {
  framesDrawn: number;
  width: number;
  height: number;
  desktopId?: string;
}

/** the server process, the admin's API and a browser, for one test file */
export class MediaRig {
  readonly dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-media-'));
  readonly runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmed-'));
  readonly token = randomBytes(4).toString('hex');
  server!: ServerProcess;
  browser!: Browser;
  admin!: Api;
  private readonly pools: string[] = [];
  private made = 0;

  constructor(private readonly env: Record<string, string> = {}) {}

  unique(what: string): string {
    return `${what}-${this.token}-${++this.made}`;
  }

  async start(chromiumArgs: string[] = []): Promise<void> {
    this.server = new ServerProcess(await freePort(), {
      DATA_DIR: this.dataDir,
      RUN_DIR: this.runDir,
      DEFAULT_POOL: 'false',
      BROKER_TICK_MS: '1000',
      ...this.env,
    });
    await this.server.start();
    this.admin = await new Api(this.server.url).login(ADMIN.username, ADMIN.password);
    this.browser = await launchChromium(chromiumArgs);
  }

  /** A floating xvnc pool the admin is entitled to. */
  async pool(name: string, template: Record<string, unknown>): Promise<Pool> {
    const r = await this.admin.post('/api/admin/pools', {
      name: this.unique(name),
      description: `made by a viewer-media test`,
      provider: 'xvnc',
      assignment: 'floating',
      maxSize: 2,
      template: { width: 1024, height: 768, ...template },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const pool = r.body;
    this.pools.push(pool.id);
    const me = await this.admin.get('/api/auth/me');
    const g = await this.admin.post('/api/admin/entitlements', {
      poolId: pool.id,
      principalType: 'user',
      principalId: (me.body as { id: string }).id,
    });
    expect(g.status, JSON.stringify(g.body)).toBe(201);
    return pool;
  }

  /** A browser context signed in as the admin (the cookie from the API). */
  async context(opts: Parameters<Browser['newContext']>[0] = {}): Promise<BrowserContext> {
    const ctx = await this.browser.newContext({ viewport: { width: 1280, height: 900 }, ...opts });
    const r = await ctx.request.post(`${this.server.url}/api/auth/login`, {
      data: { username: ADMIN.username, password: ADMIN.password },
      headers: API_HEADERS,
    });
    expect(r.status()).toBe(200);
    return ctx;
  }

  /** Connect to `pool` through the API and open its viewer; resolves once it draws. */
  async viewer(ctx: BrowserContext, pool: Pool): Promise<{ page: Page; sessionId: string }> {
    const r = await ctx.request.post(`${this.server.url}/api/pools/${pool.id}/connect`, {
      data: {},
      headers: API_HEADERS,
    });
    expect(r.status(), await r.text()).toBe(200);
    const { sessionId } = (await r.json()) as ConnectResult;
    const page = await ctx.newPage();
    await page.goto(`${this.server.url}/desktop/${sessionId}`);
    await drawing(page);
    return { page, sessionId };
  }

  /** The handle of a session's desktop, from the store. */
  desktopOf(sessionId: string): XvncHandle {
    return readStore(this.dataDir, (db) => {
      const row = db
        .prepare(
          'select d.handle as handle from sessions s join desktops d on d.id = s.desktop_id where s.id = ?',
        )
        .get(sessionId) as { handle: string | null } | undefined;
      expect(row?.handle, 'the session has a running desktop').toBeTruthy();
      return JSON.parse(row!.handle!) as XvncHandle;
    });
  }

  sessionState(sessionId: string): { state: string; ended_reason: string | null } | undefined {
    return readStore(
      this.dataDir,
      (db) =>
        db.prepare('select * from sessions where id = ?').get(sessionId) as
          { state: string; ended_reason: string | null } | undefined,
    );
  }

  auditActions(prefix: string): Array<{ action: string; detail: string | null }> {
    return readStore(
      this.dataDir,
      (db) =>
        db
          .prepare('select action, detail from audit_log where action like ? order by at')
          .all(`${prefix}%`) as Array<{ action: string; detail: string | null }>,
    );
  }

  async stop(): Promise<void> {
    const handles = readStore(
      this.dataDir,
      (db) =>
        db.prepare('select handle from desktops where handle is not null').all() as Array<{
          handle: string;
        }>,
    ).map((r) => JSON.parse(r.handle) as XvncHandle);
    for (const id of this.pools)
      await this.admin?.del(`/api/admin/pools/${id}?force=true`).catch(() => undefined);
    await this.browser?.close();
    await this.server?.stop();
    for (const h of handles)
      for (const pid of [h.xvncPid, h.sessionPid])
        if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

/** The viewer is attached and has drawn the desktop. */
export function drawing(p: Page): Promise<unknown> {
  return p.waitForFunction(
    () =>
      document.body.dataset.viewer === 'connected' &&
      ((window as Window & { __vdiViewer?: ViewerHook }).__vdiViewer?.framesDrawn ?? 0) > 0,
    null,
    { timeout: 30_000 },
  );
}

/**
 * Runs a shell command in the desktop as its own account (inside its sandbox: its mount and
 * network namespaces, its home at its own path, its environment).
 */
export async function asDesktop(
  h: XvncHandle,
  script: string,
  env: Record<string, string> = {},
): Promise<string> {
  const home = homeInside(h);
  const vars = [
    `HOME=${home}`,
    `DISPLAY=${h.xEnv?.DISPLAY ?? `:${h.display}`}`,
    `XAUTHORITY=${h.xEnv?.XAUTHORITY ?? ''}`,
    'PATH=/usr/local/bin:/usr/bin:/bin',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
  ];
  const inner = ['env', '-i', ...vars, '/bin/sh', '-c', `cd "$HOME" && ${script}`];
  const drop = h.account
    ? [
        'setpriv',
        `--reuid=${h.account.uid}`,
        `--regid=${h.account.gid}`,
        '--clear-groups',
        '--',
        ...inner,
      ]
    : inner;
  const argv =
    h.isolation === 'sandbox'
      ? ['nsenter', '-t', String(h.xvncPid), '-m', '-n', '--', ...drop]
      : drop;
  const r = await run(argv[0]!, argv.slice(1), { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 });
  return r.stdout;
}

export { launchChromium };

/**
 * Saves a screenshot of the page as `name` in $VDI_SCREENSHOTS (the README's pictures:
 * `VDI_SCREENSHOTS=$PWD/../docs/img npx vitest run -c … test/e2e/viewer-*.test.ts`).
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = process.env.VDI_SCREENSHOTS;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, name) });
}
