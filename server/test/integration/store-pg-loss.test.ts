/**
 * PostgreSQL connections that die under the store (a restarted database, a terminated
 * session, a dropped database) cost the work that used them, never the process: a pooled
 * connection's 'error' event that nobody hears would end it.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { openStore, type Store } from '../../src/store/db.js';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `vdi_loss_${randomBytes(4).toString('hex')}`;

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** end every session on the test database but the caller's */
const terminateAll = () =>
  admin((c) =>
    c.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [dbName],
    ),
  );

/** sessions on the test database */
const backends = () =>
  admin(async (c) => {
    const r = await c.query<{ n: string }>(
      'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1',
      [dbName],
    );
    return Number(r.rows[0]!.n);
  });

describe('a PostgreSQL store losing its connections', () => {
  let store: Store;
  const poolErrors: Error[] = [];

  beforeAll(async () => {
    await admin((c) => c.query(`CREATE DATABASE ${dbName}`));
    store = await openStore({
      databaseUrl: PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`),
      dataDir: os.tmpdir(),
      onPoolError: (err) => poolErrors.push(err),
    });
  });

  afterAll(async () => {
    await store?.close().catch(() => undefined);
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
  });

  it('a held cluster lock whose connection is terminated: the holder finishes, the process goes on', async () => {
    const done = await store.lock.run('desktop:x', async () => {
      await terminateAll();
      // the terminated connection tells its client while no query runs on it
      await expect.poll(backends, { timeout: 5000, interval: 50 }).toBe(0);
      return 'finished';
    });
    expect(done).toBe('finished');
    // the lock and the queries work again on fresh connections
    await expect(store.lock.run('desktop:x', async () => 'again')).resolves.toBe('again');
    await expect(store.ping()).resolves.toBeUndefined();
  });

  it('idle pooled connections terminated: reported, replaced, queries go on', async () => {
    await store.ping();
    await store.lock.run('desktop:y', async () => undefined);
    poolErrors.length = 0;
    // every session on the database is an idle pooled connection now; each must be reported
    const idle = await backends();
    expect(idle).toBeGreaterThan(0);
    await terminateAll();
    // the pools hear of each (no listener would end the process) and drop it, so the next
    // query reconnects (a query sent on a connection whose news had not been read yet would
    // be the work that connection costs, which this step is not about)
    await expect.poll(() => poolErrors.length, { timeout: 5000, interval: 50 }).toBe(idle);
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
