import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ProviderError } from '../types.js';
import {
  findHierarchies,
  type CgroupsOptions,
  type Controller,
  type Hierarchy,
} from './cgroup-hierarchies.js';

/**
 * One cgroup per desktop, on cgroup v2, v1, or the hybrid of both (v1 controllers plus a
 * controller-less v2 tree, as on this project's reference machine). Every desktop cgroup sits
 * under a `vdi` parent (by default below the server's own cgroup, so the desktops stay inside
 * whatever the host allotted to the server), carries the pool's limits, reports its usage,
 * and is emptied (every process killed) and removed when the desktop goes.
 *
 * Finding the hierarchies is in cgroup-hierarchies.ts; the rest stays here (a little over the
 * house's ~400 lines) because each operation — create, limit, read usage, kill, remove — has a
 * v1 and a v2 branch that are easiest to check against each other side by side.
 */

/** CPU, memory and process limits of one desktop; 0 means "no limit" where allowed. */
export interface CgroupLimits {
  /** relative CPU share against other desktops: 100 = a normal share (cgroup v2 cpu.weight) */
  cpuWeight: number;
  /** at most this many CPUs' worth of time, e.g. 1.5; 0 = no cap */
  cpuMax: number;
  /** memory (RAM + swap) the desktop may use, MiB; 0 = no limit */
  memoryMb: number;
  /** tasks (processes and threads) the desktop may have at once; 0 = no limit */
  pids: number;
}

/** What a desktop's handle records about its cgroup: the directories, one per hierarchy. */
export interface CgroupRef {
  /** absolute cgroup directories (one per hierarchy used), e.g. /sys/fs/cgroup/memory/vdi/x */
  dirs: string[];
}

export interface CgroupUsage {
  /** CPU time used since the cgroup was made, seconds */
  cpuSeconds: number;
  /** memory charged to the cgroup (RSS, page cache, tmpfs), bytes */
  memoryBytes: number;
  /** tasks now in the cgroup */
  tasks: number;
}

/** the CFS period we write with a quota, µs (the kernel's default) */
const CFS_PERIOD_US = 100_000;
/** how often the kill loop re-reads a cgroup's members while emptying it */
const KILL_POLL_MS = 20;
/** how long a cgroup may take to empty after SIGKILL before we report failure */
const KILL_TIMEOUT_MS = 10_000;

const MiB = 1024 * 1024;

export class CgroupError extends ProviderError {}

function readNumber(file: string): number | undefined {
  try {
    const v = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function write(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    throw new CgroupError(
      'CGROUP_WRITE_FAILED',
      `could not write ${JSON.stringify(value)} to ${file}: ${(err as Error).message}`,
    );
  }
}

/** The processes in a cgroup directory (none once it is gone). */
export function readPids(dir: string): number[] {
  try {
    return fs
      .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function exists(p: string): boolean {
  return fs.existsSync(p);
}

/**
 * The cgroup hierarchies of this host and the operations on one desktop's cgroup. Use
 * `Cgroups.detect()`; it answers undefined (with the reason) where cgroups cannot be used.
 */
export class Cgroups {
  private constructor(
    /** hierarchies in use, with the controller each provides */
    private readonly byController: Map<Controller, Hierarchy>,
    /** where membership is tracked and killed: the v2 tree when there is one */
    private readonly tracker: Hierarchy,
    private readonly all: Hierarchy[],
    readonly layout: 'v1' | 'v2' | 'hybrid',
  ) {}

  /** Finds the hierarchies; the reason why not when this process cannot manage cgroups. */
  static detect(opts: CgroupsOptions = {}): Cgroups | string {
    const found = findHierarchies(opts);
    if (typeof found === 'string') return found;
    return new Cgroups(found.byController, found.tracker, found.all, found.layout);
  }

  /** e.g. "cgroup v1 (cpu, memory, pids) + v2 tracking" for the admin view and logs */
  describe(): string {
    if (this.layout === 'v2') return 'cgroup v2';
    return this.layout === 'hybrid' ? 'cgroup v1 + v2 (hybrid)' : 'cgroup v1';
  }

  /** The parent directories, for sweeping: every desktop cgroup of this host's servers. */
  private parents(): string[] {
    return this.all.map((h) => h.parent);
  }

  /**
   * Makes the desktop's cgroup in every hierarchy and writes its limits. `name` must be
   * unique on the host (the caller includes its run-dir tag).
   */
  create(name: string, limits: CgroupLimits): CgroupRef {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/.test(name))
      throw new CgroupError('CGROUP_BAD_NAME', `bad cgroup name ${JSON.stringify(name)}`);
    const ref: CgroupRef = { dirs: this.all.map((h) => path.join(h.parent, name)) };
    try {
      for (const h of this.all) this.makeDir(h, name);
      this.applyLimits(ref, limits);
    } catch (err) {
      this.removeDirs(ref);
      throw err;
    }
    return ref;
  }

  private makeDir(h: Hierarchy, name: string): void {
    // Another server on this host may remove the shared parent when its last desktop goes
    // (see remove()); between its rmdir and our mkdir the parent is simply made again.
    for (let attempt = 0; ; attempt++) {
      try {
        if (!exists(h.parent)) {
          fs.mkdirSync(h.parent, { recursive: true });
        }
        if (h.version === 2) this.enableControllers(h);
        fs.mkdirSync(path.join(h.parent, name));
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return;
        if (code === 'ENOENT' && attempt < 5) continue;
        if (err instanceof CgroupError) throw err;
        throw new CgroupError(
          'CGROUP_CREATE_FAILED',
          `could not make cgroup ${path.join(h.parent, name)}: ${(err as Error).message}`,
        );
      }
    }
  }

  /** v2: every level from the mount down to the parent must hand cpu, memory and pids down */
  private enableControllers(h: Hierarchy): void {
    const wanted = ['cpu', 'memory', 'pids'].filter((c) => h.controllers.has(c));
    if (wanted.length === 0) return; // a tracking-only tree (hybrid layout)
    const chain: string[] = [];
    for (let d = h.parent; d.startsWith(h.mountPoint); d = path.dirname(d)) {
      chain.unshift(d);
      if (d === h.mountPoint) break;
    }
    for (const dir of chain) {
      const ctl = path.join(dir, 'cgroup.subtree_control');
      let missing = wanted;
      try {
        const enabled = fs.readFileSync(ctl, 'utf8').trim().split(/\s+/);
        missing = wanted.filter((c) => !enabled.includes(c));
        if (missing.length === 0) continue;
        fs.writeFileSync(ctl, missing.map((c) => `+${c}`).join(' '));
      } catch (err) {
        throw new CgroupError(
          'CGROUP_DELEGATION',
          `could not enable ${missing.join(', ')} in ${ctl} (${(err as NodeJS.ErrnoException).code}): ` +
            'a cgroup v2 group holding processes cannot pass controllers down; set CGROUP_PARENT ' +
            'to a cgroup of its own (e.g. /vdi) or run the server in a delegated leaf cgroup',
        );
      }
    }
  }

  /** the desktop's directory in the hierarchy of `h` (found by mount, whatever the parent) */
  private dirIn(ref: CgroupRef, h: Hierarchy | undefined): string | undefined {
    return h ? ref.dirs.find((d) => d.startsWith(`${h.mountPoint}/`)) : undefined;
  }

  applyLimits(ref: CgroupRef, limits: CgroupLimits): void {
    const dirOfCtl = (c: Controller) => this.dirIn(ref, this.byController.get(c));
    const cpu = dirOfCtl('cpu');
    const mem = dirOfCtl('memory');
    const pids = dirOfCtl('pids');
    const v2 = (c: Controller) => this.byController.get(c)?.version === 2;
    if (cpu) {
      if (v2('cpu')) {
        write(path.join(cpu, 'cpu.weight'), String(limits.cpuWeight));
        write(
          path.join(cpu, 'cpu.max'),
          limits.cpuMax > 0
            ? `${Math.round(limits.cpuMax * CFS_PERIOD_US)} ${CFS_PERIOD_US}`
            : `max ${CFS_PERIOD_US}`,
        );
      } else {
        // v1 shares: 1024 is the normal share, as weight 100 is on v2
        write(
          path.join(cpu, 'cpu.shares'),
          String(Math.max(2, Math.round((limits.cpuWeight * 1024) / 100))),
        );
        write(path.join(cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
        write(
          path.join(cpu, 'cpu.cfs_quota_us'),
          limits.cpuMax > 0 ? String(Math.round(limits.cpuMax * CFS_PERIOD_US)) : '-1',
        );
      }
    }
    if (mem) {
      const bytes = limits.memoryMb > 0 ? limits.memoryMb * MiB : undefined;
      if (v2('memory')) {
        write(path.join(mem, 'memory.max'), bytes !== undefined ? String(bytes) : 'max');
        // without this, a hog would be pushed to swap instead of being stopped at the limit
        if (exists(path.join(mem, 'memory.swap.max')))
          write(path.join(mem, 'memory.swap.max'), bytes !== undefined ? '0' : 'max');
      } else {
        const memsw = path.join(mem, 'memory.memsw.limit_in_bytes');
        const value = bytes !== undefined ? String(bytes) : '-1';
        // memsw must stay >= the RAM limit: raise it first when lifting, lower it last
        if (bytes === undefined && exists(memsw)) write(memsw, value);
        write(path.join(mem, 'memory.limit_in_bytes'), value);
        if (bytes !== undefined && exists(memsw)) write(memsw, value);
      }
    }
    if (pids) write(path.join(pids, 'pids.max'), limits.pids > 0 ? String(limits.pids) : 'max');
  }

  /** the files a process writes its pid into to join this desktop's cgroups */
  procsFiles(ref: CgroupRef): string[] {
    return ref.dirs.map((d) => path.join(d, 'cgroup.procs'));
  }

  /** pids of every process in the desktop's cgroup */
  members(ref: CgroupRef): number[] {
    const dir = this.trackerDir(ref);
    return dir ? readPids(dir) : [];
  }

  private trackerDir(ref: CgroupRef): string | undefined {
    return this.dirIn(ref, this.tracker) ?? ref.dirs[0];
  }

  /** Current CPU, memory and task count; undefined when the cgroup is gone. */
  usage(ref: CgroupRef): CgroupUsage | undefined {
    const at = (c: Controller) => {
      const h = this.byController.get(c);
      const d = this.dirIn(ref, h);
      return d && exists(d) ? { dir: d, v2: h!.version === 2 } : undefined;
    };
    const mem = at('memory');
    const pids = at('pids');
    if (!mem || !pids) return undefined;
    let cpuSeconds = 0;
    const acct = at('cpuacct');
    const cpu = at('cpu');
    if (cpu?.v2 || (!acct && this.tracker.version === 2)) {
      const dir = cpu?.v2 ? cpu.dir : this.trackerDir(ref)!;
      try {
        const m = /^usage_usec (\d+)/m.exec(fs.readFileSync(path.join(dir, 'cpu.stat'), 'utf8'));
        cpuSeconds = m ? Number(m[1]) / 1e6 : 0;
      } catch {
        /* gone meanwhile */
      }
    } else if (acct) {
      cpuSeconds = (readNumber(path.join(acct.dir, 'cpuacct.usage')) ?? 0) / 1e9;
    }
    const memoryBytes =
      readNumber(path.join(mem.dir, mem.v2 ? 'memory.current' : 'memory.usage_in_bytes')) ?? 0;
    const tasks = readNumber(path.join(pids.dir, 'pids.current')) ?? 0;
    return { cpuSeconds, memoryBytes, tasks };
  }

  /** how many processes the memory controller has OOM-killed in this cgroup */
  oomKills(ref: CgroupRef): number {
    const h = this.byController.get('memory')!;
    const dir = this.dirIn(ref, h);
    if (!dir) return 0;
    try {
      const file = h.version === 2 ? 'memory.events' : 'memory.oom_control';
      const m = /^oom_kill (\d+)/m.exec(fs.readFileSync(path.join(dir, file), 'utf8'));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  /** Sends `signal` to every process of the desktop. */
  signalAll(ref: CgroupRef, signal: NodeJS.Signals): void {
    for (const pid of this.members(ref)) {
      try {
        process.kill(pid, signal);
      } catch {
        /* exited meanwhile */
      }
    }
  }

  /**
   * Kills every process of the desktop, including ones forked while we kill (a fork bomb):
   * cgroup.kill on v2; on v1 the freezer stops the group first so nothing new starts.
   */
  async kill(ref: CgroupRef): Promise<void> {
    const tracker = this.trackerDir(ref);
    if (!tracker || !exists(tracker)) return;
    const killFile = path.join(tracker, 'cgroup.kill');
    const freezerH = this.byController.get('freezer');
    const freezer = freezerH?.version === 1 ? this.dirIn(ref, freezerH) : undefined;
    const deadline = Date.now() + KILL_TIMEOUT_MS;
    for (;;) {
      if (readPids(tracker).length === 0) break;
      if (exists(killFile)) {
        try {
          fs.writeFileSync(killFile, '1');
        } catch {
          /* the cgroup went away meanwhile */
        }
      } else {
        if (freezer) tryWrite(path.join(freezer, 'freezer.state'), 'FROZEN');
        for (const pid of readPids(tracker)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        if (freezer) tryWrite(path.join(freezer, 'freezer.state'), 'THAWED');
      }
      if (Date.now() > deadline)
        throw new CgroupError(
          'CGROUP_KILL_FAILED',
          `processes ${readPids(tracker).join(' ')} of ${tracker} survived SIGKILL`,
        );
      await delay(KILL_POLL_MS);
    }
  }

  /** Kills what is left and removes the desktop's cgroup directories. */
  async remove(ref: CgroupRef): Promise<void> {
    await this.kill(ref);
    // a killed process leaves its cgroup a moment after it is reaped
    const deadline = Date.now() + KILL_TIMEOUT_MS;
    for (;;) {
      const left = this.removeDirs(ref);
      if (left.length === 0) break;
      if (Date.now() > deadline)
        throw new CgroupError('CGROUP_REMOVE_FAILED', `could not remove ${left.join(', ')}`);
      await delay(KILL_POLL_MS);
    }
    // The parent goes too once empty, so nothing of ours stays in a cgroup tree someone else
    // manages (e.g. the server's own service cgroup); the next desktop makes it again.
    for (const p of this.parents()) {
      try {
        fs.rmdirSync(p);
      } catch {
        /* other desktops still there, or already gone */
      }
    }
  }

  /** rmdir each directory; the ones that could not be removed yet */
  private removeDirs(ref: CgroupRef): string[] {
    const left: string[] = [];
    for (const d of ref.dirs) {
      try {
        fs.rmdirSync(d);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d);
      }
    }
    return left;
  }

  /** The desktop cgroups whose names start with `prefix` (for start-up sweeps). */
  list(prefix: string): CgroupRef[] {
    const names = new Set<string>();
    for (const p of this.parents()) {
      try {
        for (const e of fs.readdirSync(p, { withFileTypes: true }))
          if (e.isDirectory() && e.name.startsWith(prefix)) names.add(e.name);
      } catch {
        /* no parent yet */
      }
    }
    return [...names].map((n) => ({ dirs: this.all.map((h) => path.join(h.parent, n)) }));
  }
}

function tryWrite(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch {
    /* best effort */
  }
}
