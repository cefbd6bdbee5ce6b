import type { ClusterLock } from '../store/cluster-lock.js';

/** Serialises async work per key (one Connect at a time per user and pool, one resize per pool). */
export class KeyedMutex {
  private tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/**
 * A KeyedMutex that holds across nodes too (decision 11): this process's mutex for the key,
 * then the store's cluster-wide lock for it (PostgreSQL advisory locks; nothing more on SQLite).
 */
export class ClusterMutex {
  private readonly local = new KeyedMutex();

  constructor(
    private readonly lock: ClusterLock,
    /** keeps one kind of key (users, pools, desktops) apart from the others */
    private readonly kind: string,
  ) {}

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.local.run(key, () => this.lock.run(`vdi:${this.kind}:${key}`, fn));
  }
}
