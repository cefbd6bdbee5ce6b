/**
 * Placement on several nodes (issue 11, decision 11): two brokers on one PostgreSQL, each
 * placing desktops on the same two hosts (as two gateway nodes on one LXD cluster do). A
 * host's maximum holds however the Connects of many users interleave across the nodes: a
 * desktop still starting on one node counts on the other. The provider is the broker tests'
 * fake with hosts (the real LXD cluster is in lxd-cluster.test.ts); the store and its locks
 * are the real PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolCreateBody } from '@vdi/shared';
import { ManualClock } from '../../src/clock.js';
import { Broker } from '../../src/broker/broker.js';
import { BrokerError } from '../../src/broker/errors.js';
import { PoolAdmin } from '../../src/broker/pools.js';
import { openStore, type Store } from '../../src/store/db.js';
import type {
  CreateSpec,
  DesktopHandle,
  Provider,
  ProviderHost,
} from '../../src/providers/types.js';
import { ADMIN, FakeProvider, log } from '../unit/broker/fixture.js';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Two hosts; each desktop's handle names its host; a start takes a while (a real one does). */
class HostedFake extends FakeProvider {
  override createDelayMs = 40;
  async hosts(): Promise<ProviderHost[]> {
    return ['m1', 'm2'].map((name, i) => ({
      name,
      address: `https://127.0.0.${i + 2}:8443`,
      online: true,
      detail: 'Online',
    }));
  }
  override async create(spec: CreateSpec): Promise<DesktopHandle> {
    const h = await super.create(spec);
    return { ...h, member: spec.host ?? 'none' };
  }
}

describe('placement across nodes on one PostgreSQL', () => {
  const dbName = `vdi_place_${randomBytes(4).toString('hex')}`;
  const url = PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-place-'));
  const clock = new ManualClock();
  const nodes: { store: Store; broker: Broker; fake: HostedFake }[] = [];

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    for (const id of ['node-a', 'node-b']) {
      // one after the other: the first runs the migrations
      const store = await openStore({ databaseUrl: url, dataDir: dir });
      const fake = new HostedFake();
      const broker = new Broker(store.db, new Map<string, Provider>([['xvnc', fake]]), clock, log, {
        tickMs: 60_000,
        node: { host: 'gw', id, clustered: true },
        lock: store.lock,
      });
      nodes.push({ store, broker, fake });
    }
  });

  afterAll(async () => {
    for (const n of nodes) await n.store.close();
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function user(db: Store['db'], poolId: string): Promise<{ id: string; name: string }> {
    const id = randomUUID();
    const name = `u-${id.slice(0, 8)}`;
    const now = new Date(clock.now()).toISOString();
    await db
      .insertInto('users')
      .values({
        id,
        username: name,
        display_name: '',
        password_hash: 'x',
        role: 'user',
        disabled: 0,
        created_at: now,
      })
      .execute();
    await db
      .insertInto('entitlements')
      .values({
        id: randomUUID(),
        pool_id: poolId,
        principal_type: 'user',
        principal_id: id,
        created_at: now,
      })
      .execute();
    return { id, name };
  }

  it('no host gets more than its maximum when both nodes place at once (5 rounds of 6 users)', async () => {
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const pools = new PoolAdmin(a.store.db, a.broker, clock, log);
    const pool = await pools.create(
      PoolCreateBody.parse({ name: 'placed', provider: 'xvnc', maxSize: 20 }),
      ADMIN,
    );
    await a.broker.tick();
    await a.broker.hosts(); // the members are recorded on first sight
    await a.broker.updateHost('m1', { maxSessions: 1 }, ADMIN);
    await a.broker.updateHost('m2', { maxSessions: 2 }, ADMIN);
    for (let round = 0; round < 5; round++) {
      const users = await Promise.all(Array.from({ length: 6 }, () => user(a.store.db, pool.id)));
      // every user Connects at the same moment, half through each node
      const results = await Promise.allSettled(
        users.map((u, i) => (i % 2 === 0 ? a : b).broker.connect(u, pool.id)),
      );
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.flatMap((r) =>
        r.status === 'rejected' ? [(r.reason as BrokerError).code] : [],
      );
      const created = [...a.fake.created, ...b.fake.created].map((s) => s.host);
      expect(ok, `round ${round}`).toHaveLength(3);
      expect(refused, `round ${round}`).toEqual([
        'NO_HOST_CAPACITY',
        'NO_HOST_CAPACITY',
        'NO_HOST_CAPACITY',
      ]);
      expect(
        created.filter((h) => h === 'm1'),
        `round ${round}`,
      ).toHaveLength(1);
      expect(
        created.filter((h) => h === 'm2'),
        `round ${round}`,
      ).toHaveLength(2);
      const listed = await b.broker.hosts();
      expect(listed.map((h) => [h.id, h.sessions])).toEqual([
        ['m1', 1],
        ['m2', 2],
      ]);
      // everyone logs off: the hosts are empty for the next round
      for (const r of results)
        if (r.status === 'fulfilled')
          await a.broker.logoff(r.value.sessionId, ADMIN, 'logged off by test');
      await a.broker.tick();
      await b.broker.tick();
      expect((await a.broker.hosts()).map((h) => h.sessions)).toEqual([0, 0]);
      a.fake.created.length = 0;
      b.fake.created.length = 0;
    }
  });
});
