import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterEach, beforeEach } from 'vitest';
import { PoolCreateBody, XvncTemplate } from '@vdi/shared';
import { ManualClock } from '../../../src/clock.js';
import { openStore, type Store } from '../../../src/store/db.js';
import { Broker } from '../../../src/broker/broker.js';
import type { Actor } from '../../../src/broker/actor.js';
import { BrokerError } from '../../../src/broker/errors.js';
import { PoolAdmin } from '../../../src/broker/pools.js';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderStatus,
} from '../../../src/providers/types.js';
import type { RfbEndpoint } from '../../../src/rfb/endpoint.js';

/*
 * Assignment logic against a real SQLite store and an in-test provider whose desktops are
 * entries in a map: fast and deterministic, so every rule can be checked at its edges. The
 * same rules run against real Xvnc desktops in test/integration/broker-*.test.ts.
 */

interface FakeHandle {
  fake: number;
  desktopId: string;
}

export class FakeProvider implements Provider {
  readonly kind = 'xvnc' as const;
  /** running desktops by handle number */
  readonly alive = new Map<number, string>();
  readonly created: CreateSpec[] = [];
  readonly destroyed: { desktopId: string; keepDisk: boolean }[] = [];
  swept: DesktopHandle[][] = [];
  /** ms each create/destroy takes (widens race windows) */
  createDelayMs = 0;
  destroyDelayMs = 0;
  failCreates = 0;
  private seq = 0;

  async status(): Promise<ProviderStatus> {
    return { ok: true, detail: 'fake' };
  }
  parseTemplate(t: unknown): Record<string, unknown> {
    return XvncTemplate.parse(t ?? {});
  }
  async create(spec: CreateSpec): Promise<DesktopHandle> {
    this.created.push(spec);
    if (this.createDelayMs) await new Promise((r) => setTimeout(r, this.createDelayMs));
    if (this.failCreates > 0) {
      this.failCreates--;
      throw new ProviderError('XVNC_START_FAILED', 'fake start failure');
    }
    const h: FakeHandle = { fake: ++this.seq, desktopId: spec.desktopId };
    this.alive.set(h.fake, spec.desktopId);
    return h as unknown as DesktopHandle;
  }
  endpoint(h: DesktopHandle): RfbEndpoint {
    return { kind: 'unix', path: `/nonexistent/${(h as unknown as FakeHandle).fake}` };
  }
  async health(h: DesktopHandle): Promise<DesktopHealth> {
    return this.alive.has((h as unknown as FakeHandle).fake)
      ? { state: 'running' }
      : { state: 'dead', reason: 'fake desktop killed' };
  }
  async destroy(h: DesktopHandle, _log: unknown, opts?: { keepDisk?: boolean }): Promise<void> {
    if (this.destroyDelayMs) await new Promise((r) => setTimeout(r, this.destroyDelayMs));
    const fh = h as unknown as FakeHandle;
    this.alive.delete(fh.fake);
    this.destroyed.push({ desktopId: fh.desktopId, keepDisk: opts?.keepDisk ?? false });
  }
  async sweep(known: DesktopHandle[]): Promise<number> {
    this.swept.push(known);
    const keep = new Set(known.map((h) => (h as unknown as FakeHandle).fake));
    let n = 0;
    for (const k of [...this.alive.keys()]) {
      if (!keep.has(k)) {
        this.alive.delete(k);
        n++;
      }
    }
    return n;
  }
  /** desktops whose kept disk was removed */
  readonly purged: string[] = [];
  async purge(desktopId: string): Promise<void> {
    this.purged.push(desktopId);
  }
  /** kill the running desktop of a desktop row (as if its process died) */
  kill(desktopId: string): void {
    for (const [k, v] of this.alive) if (v === desktopId) this.alive.delete(k);
  }
}

export const log = pino({ level: 'silent' });
export const ADMIN: Actor = { id: null, name: 'test-admin' };

/** One test's broker: a fresh SQLite store, a manual clock and a fake provider. */
export interface BrokerEnv {
  dir: string;
  store: Store;
  clock: ManualClock;
  fake: FakeProvider;
  broker: Broker;
  pools: PoolAdmin;
}

/**
 * Sets up a BrokerEnv before each test of the calling file and tears it down after; the
 * returned object holds the current test's.
 */
export function useBroker(): BrokerEnv {
  const env = {} as BrokerEnv;
  beforeEach(async () => {
    env.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-broker-unit-'));
    env.store = await openStore({ dataDir: env.dir });
    env.clock = new ManualClock();
    env.fake = new FakeProvider();
    env.broker = new Broker(
      env.store.db,
      new Map<string, Provider>([['xvnc', env.fake]]),
      env.clock,
      log,
      { tickMs: 60_000 },
    );
    env.pools = new PoolAdmin(env.store.db, env.broker, env.clock, log);
  });
  afterEach(async () => {
    // a pool change fires a background tick: let it finish before the store goes away
    await env.broker.tick();
    await env.store.close();
    fs.rmSync(env.dir, { recursive: true, force: true });
  });
  return env;
}

/** Rows and actions the tests build on, against the current test's broker. */
export function brokerHelpers(env: BrokerEnv) {
  async function user(name: string): Promise<Actor & { id: string }> {
    const id = randomUUID();
    await env.store.db
      .insertInto('users')
      .values({
        id,
        username: name,
        display_name: '',
        password_hash: 'x',
        role: 'user',
        disabled: 0,
        created_at: new Date(env.clock.now()).toISOString(),
      })
      .execute();
    return { id, name };
  }

  async function entitle(poolId: string, u: { id: string }): Promise<void> {
    await env.store.db
      .insertInto('entitlements')
      .values({
        id: randomUUID(),
        pool_id: poolId,
        principal_type: 'user',
        principal_id: u.id,
        created_at: new Date(env.clock.now()).toISOString(),
      })
      .execute();
  }

  async function pool(over: Record<string, unknown> = {}): Promise<string> {
    const p = await env.pools.create(
      PoolCreateBody.parse({ name: `p-${randomUUID().slice(0, 8)}`, provider: 'xvnc', ...over }),
      ADMIN,
    );
    await env.broker.tick(); // the create's own tick, so the test starts from a settled pool
    return p.id;
  }

  async function desktops(poolId: string) {
    return env.store.db
      .selectFrom('desktops')
      .selectAll()
      .where('pool_id', '=', poolId)
      .orderBy('created_at')
      .execute();
  }

  async function liveSessions(poolId?: string) {
    let q = env.store.db.selectFrom('sessions').selectAll().where('state', '<>', 'ended');
    if (poolId) q = q.where('pool_id', '=', poolId);
    return q.execute();
  }

  return { user, entitle, pool, desktops, liveSessions };
}

/** The code of the BrokerError a promise rejects with, or 'ok'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof BrokerError) return e.code;
    throw e;
  }
}
