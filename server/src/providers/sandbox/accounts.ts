import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ProviderError } from '../types.js';

/**
 * One account (uid and gid) per desktop, from a configured range, without passwd entries on
 * the host: the sandbox gets its own /etc/passwd line (see sandbox.ts), the host only ever sees
 * the number. Several server processes on one host share the range, so a uid is taken with a
 * host-wide lock: a file created with O_EXCL in a root-owned directory, naming its owner (the
 * server's run directory and the desktop). A uid is used only when, besides the lock, no live
 * process runs as it. Locks are released at destroy and reclaimed at the start-up sweep, or
 * when their owner's run directory is gone and nothing runs as the uid.
 */

export interface DesktopAccount {
  uid: number;
  gid: number;
  /** the name the desktop sees for itself (its own passwd line) */
  name: string;
}

export interface UidRange {
  /** first uid (and gid) of the range */
  base: number;
  /** how many uids the range holds */
  count: number;
}

/** What a lock file holds: whose the uid is. */
interface LockOwner {
  runDir: string;
  /** which provider of that server (xvnc and qemu share a run directory) */
  scope: string;
  desktopId: string;
  /** random per allocation: tells a lock we judged stale apart from a fresh one */
  nonce: string;
}

export const DEFAULT_LOCK_DIR = '/run/vdi-uids';

export function accountName(uid: number): string {
  return `vdi-${uid}`;
}

/** uids of every live process on this host (real, effective, saved or filesystem uid) */
export function uidsInUse(): Set<number> {
  const out = new Set<number>();
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(
        fs.readFileSync(`/proc/${e}/status`, 'utf8'),
      );
      if (m) for (const u of m.slice(1)) out.add(Number(u));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** pids of live processes running as `uid` (any of real/effective/saved/fs uid) */
export function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(
        fs.readFileSync(`/proc/${e}/status`, 'utf8'),
      );
      if (m?.slice(1).some((u) => Number(u) === uid)) out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** uids and gids named in the host's passwd and group files: never handed to a desktop */
function systemIds(): Set<number> {
  const out = new Set<number>();
  for (const file of ['/etc/passwd', '/etc/group']) {
    try {
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        const id = Number(line.split(':')[2]);
        if (line && Number.isInteger(id)) out.add(id);
      }
    } catch {
      /* no such file */
    }
  }
  return out;
}

export class UidAllocator {
  constructor(
    private readonly range: UidRange,
    /** the allocating server's run directory: names it as the owner of its locks */
    private readonly runDir: string,
    /** the provider within that server ('xvnc', 'qemu'): each sweeps only its own locks */
    private readonly scope: string,
    private readonly lockDir = DEFAULT_LOCK_DIR,
  ) {}

  private lockPath(uid: number): string {
    return path.join(this.lockDir, String(uid));
  }

  private ensureLockDir(): void {
    fs.mkdirSync(this.lockDir, { recursive: true, mode: 0o700 });
    const st = fs.statSync(this.lockDir);
    // anyone else able to write here could take or drop locks for us
    if (st.uid !== 0 || (st.mode & 0o022) !== 0)
      throw new ProviderError(
        'UID_LOCK_DIR_UNSAFE',
        `${this.lockDir} must be owned by root and writable by root only`,
      );
  }

  private readLock(uid: number): LockOwner | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.lockPath(uid), 'utf8')) as LockOwner;
    } catch {
      return undefined;
    }
  }

  /**
   * Takes a free uid for `desktopId`, trying `preferred` first (a dedicated desktop keeps its
   * uid when it can, so its home need not change owner).
   */
  allocate(desktopId: string, preferred?: number): DesktopAccount {
    this.ensureLockDir();
    const { base, count } = this.range;
    const reserved = systemIds();
    const busy = uidsInUse();
    const order: number[] = [];
    if (preferred !== undefined && preferred >= base && preferred < base + count)
      order.push(preferred);
    // start at a random place so concurrent servers rarely race for the same uid
    const start = Math.floor(Math.random() * count);
    for (let i = 0; i < count; i++) order.push(base + ((start + i) % count));
    for (const uid of order) {
      if (reserved.has(uid) || busy.has(uid)) continue;
      if (!this.tryLock(uid, desktopId)) continue;
      // the lock is ours; a process that started as this uid meanwhile would share it
      if (processesOf(uid).length > 0) {
        this.release(uid, desktopId);
        continue;
      }
      return { uid, gid: uid, name: accountName(uid) };
    }
    throw new ProviderError(
      'NO_FREE_UID',
      `all ${count} desktop accounts (uids ${base}–${base + count - 1}) are in use; raise DESKTOP_UID_COUNT`,
    );
  }

  private tryLock(uid: number, desktopId: string): boolean {
    const owner: LockOwner = {
      runDir: this.runDir,
      scope: this.scope,
      desktopId,
      nonce: randomBytes(8).toString('hex'),
    };
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(this.lockPath(uid), JSON.stringify(owner), { flag: 'wx', mode: 0o600 });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (attempt === 0 && !this.reclaimIfStale(uid)) return false;
    }
    return false;
  }

  /**
   * A lock is stale when its owner's run directory is gone (the server and its desktops went
   * without releasing it) and no process runs as the uid. Moves it aside under a unique name
   * and puts it back if it turned out to be a fresh lock taken meanwhile.
   */
  private reclaimIfStale(uid: number): boolean {
    const seen = this.readLock(uid);
    if (!seen) return true; // removed meanwhile, or unreadable junk
    if (fs.existsSync(seen.runDir) || processesOf(uid).length > 0) return false;
    return this.dropLock(uid, seen);
  }

  /** removes the lock if it still is the one we read */
  private dropLock(uid: number, seen: LockOwner): boolean {
    const aside = `${this.lockPath(uid)}.stale-${randomBytes(6).toString('hex')}`;
    try {
      fs.renameSync(this.lockPath(uid), aside);
    } catch {
      return false; // someone else moved or removed it
    }
    let moved: LockOwner | undefined;
    try {
      moved = JSON.parse(fs.readFileSync(aside, 'utf8')) as LockOwner;
    } catch {
      /* junk: drop it */
    }
    if (moved && moved.nonce !== seen.nonce) {
      // a new owner took it between our read and our rename: give it back
      try {
        fs.linkSync(aside, this.lockPath(uid));
      } catch {
        /* taken again: that owner holds it now */
      }
      fs.rmSync(aside, { force: true });
      return false;
    }
    fs.rmSync(aside, { force: true });
    return true;
  }

  private mine(lock: LockOwner): boolean {
    return lock.runDir === this.runDir && lock.scope === this.scope;
  }

  /** Releases `uid` if this server holds it for `desktopId`. */
  release(uid: number, desktopId: string): void {
    const lock = this.readLock(uid);
    if (lock && this.mine(lock) && lock.desktopId === desktopId) this.dropLock(uid, lock);
  }

  /** Does this server hold `uid` for `desktopId`? */
  holds(uid: number, desktopId: string): boolean {
    const lock = this.readLock(uid);
    return lock !== undefined && this.mine(lock) && lock.desktopId === desktopId;
  }

  /**
   * Start-up sweep: releases this server's locks for desktops no record accounts for, once no
   * process runs as their uid. Returns the uids released.
   */
  reclaim(knownDesktopIds: ReadonlySet<string>): number[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.lockDir);
    } catch {
      return [];
    }
    const released: number[] = [];
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      const uid = Number(n);
      const lock = this.readLock(uid);
      if (!lock || !this.mine(lock) || knownDesktopIds.has(lock.desktopId)) continue;
      if (processesOf(uid).length > 0) continue;
      if (this.dropLock(uid, lock)) released.push(uid);
    }
    return released;
  }
}
