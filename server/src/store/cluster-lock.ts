import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';

/**
 * Locks that hold across every node on one database (decision 11): a PostgreSQL session
 * advisory lock (`pg_advisory_lock`) on a connection of the lock's own pool, held while `fn`
 * runs — and released by PostgreSQL when the node dies and its connection goes. SQLite serves
 * one node only: there the lock is a no-op and the caller's in-process mutex is all there is.
 *
 * A lock taken inside another (a pool's inside a user's) takes its advisory lock on the outer
 * lock's connection, so one chain of locks holds one connection: a node never waits for a lock
 * connection while holding one, and the queries `fn` runs use the store's own pool. Callers
 * take their in-process mutex for the key first (advisory locks are re-entrant per connection).
 */
export interface ClusterLock {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export const noClusterLock: ClusterLock = {
  run: (_key, fn) => fn(),
  close: async () => undefined,
};

export function pgClusterLock(pool: pg.Pool): ClusterLock {
  // `open` goes false when the chain ends: work it started that runs on afterwards (a
  // background tick) must not use a connection that went back to the pool
  const held = new AsyncLocalStorage<{ client: pg.PoolClient; open: boolean; broken: boolean }>();
  const lock = (c: pg.PoolClient, key: string) =>
    c.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key]);
  const unlock = (c: pg.PoolClient, key: string) =>
    c.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]);
  return {
    async run(key, fn) {
      const outer = held.getStore();
      if (outer?.open) {
        await lock(outer.client, key);
        try {
          return await fn();
        } finally {
          await unlock(outer.client, key).catch(() => (outer.broken = true));
        }
      }
      const client = await pool.connect();
      const chain = { client, open: true, broken: false };
      // the connection can die while the lock is held and no query runs (PostgreSQL restarted,
      // the session terminated): that must cost this lock's holder, never the process
      const onError = () => (chain.broken = true);
      client.on('error', onError);
      try {
        await lock(client, key);
        return await held.run(chain, fn);
      } finally {
        chain.open = false;
        // a connection that cannot unlock is dropped: PostgreSQL releases a gone session's locks
        await unlock(client, key).catch(() => (chain.broken = true));
        client.off('error', onError);
        client.release(chain.broken);
      }
    },
    close: () => pool.end(),
  };
}
