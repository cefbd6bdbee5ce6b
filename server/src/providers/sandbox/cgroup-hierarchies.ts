/**
 * The cgroup hierarchies of this host, from /proc/self/mountinfo and /proc/self/cgroup: a v2
 * tree, v1 controllers, or both (hybrid), and where below each this server's desktop cgroups
 * go.
 */
import fs from 'node:fs';
import path from 'node:path';

export type Controller = 'cpu' | 'cpuacct' | 'memory' | 'pids' | 'freezer';

export interface Hierarchy {
  version: 1 | 2;
  /** the directory under which this server's desktop cgroups are made */
  parent: string;
  /** v1: the controllers mounted here; v2: the controllers this parent can enable */
  controllers: Set<string>;
  /** where the hierarchy is mounted (v2: the controllers are enabled from here down) */
  mountPoint: string;
}

export interface CgroupsOptions {
  /**
   * Where desktop cgroups go, as a cgroup path inside each hierarchy (e.g. `/vdi`). Relative
   * paths are taken below the server's own cgroup. @default 'vdi'
   */
  parent?: string;
  /** tests: this text instead of /proc/self/mountinfo (cgroup trees laid out in a temp dir) */
  mountinfo?: string;
  /** tests: this text instead of /proc/self/cgroup */
  procSelfCgroup?: string;
}

/** What a host offers: the hierarchy of each controller, the one that tracks membership. */
export interface Hierarchies {
  /** hierarchies in use, with the controller each provides */
  byController: Map<Controller, Hierarchy>;
  /** where membership is tracked and killed: the v2 tree when there is one */
  tracker: Hierarchy;
  all: Hierarchy[];
  layout: 'v1' | 'v2' | 'hybrid';
}

/** Finds the hierarchies; the reason why not when this process cannot manage cgroups. */
export function findHierarchies(opts: CgroupsOptions = {}): Hierarchies | string {
  if (opts.mountinfo === undefined && process.getuid?.() !== 0)
    return 'the server does not run as root';
  let mounts: MountInfo[];
  let own: Map<string, string>;
  try {
    mounts = readMounts(opts.mountinfo ?? fs.readFileSync('/proc/self/mountinfo', 'utf8'));
    own = ownCgroups(opts.procSelfCgroup ?? fs.readFileSync('/proc/self/cgroup', 'utf8'));
  } catch (err) {
    return `cannot read the cgroup mounts (${(err as Error).message})`;
  }
  const parentName = opts.parent ?? 'vdi';
  const parentIn = (ownPath: string) =>
    parentName.startsWith('/') ? parentName : path.posix.join(ownPath, parentName);

  const byController = new Map<Controller, Hierarchy>();
  const all: Hierarchy[] = [];
  let v2: Hierarchy | undefined;
  const v2Mount = mounts.find((m) => m.fstype === 'cgroup2');
  if (v2Mount) {
    let available = new Set<string>();
    try {
      available = new Set(
        fs
          .readFileSync(path.join(v2Mount.mountPoint, 'cgroup.controllers'), 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean),
      );
    } catch {
      /* an empty v2 tree */
    }
    v2 = {
      version: 2,
      parent: dirOf(v2Mount, parentIn(own.get('') ?? '/')),
      controllers: available,
      mountPoint: v2Mount.mountPoint,
    };
    all.push(v2);
    for (const c of ['cpu', 'memory', 'pids'] as const)
      if (available.has(c)) byController.set(c, v2);
  }
  for (const c of ['cpu', 'cpuacct', 'memory', 'pids', 'freezer'] as const) {
    if (byController.has(c) || (c === 'cpuacct' && byController.get('cpu') === v2)) continue;
    const m = mounts.find((x) => x.fstype === 'cgroup' && x.superOptions.includes(c));
    if (!m) continue;
    const parent = dirOf(m, parentIn(own.get(c) ?? '/'));
    let h = all.find((x) => x.version === 1 && x.parent === parent);
    if (!h) {
      h = {
        version: 1,
        parent,
        controllers: new Set(m.superOptions.filter((o) => !o.includes('='))),
        mountPoint: m.mountPoint,
      };
      all.push(h);
    }
    byController.set(c, h);
  }
  for (const c of ['cpu', 'memory', 'pids'] as const) {
    if (!byController.has(c)) return `no cgroup ${c} controller is mounted`;
  }
  const tracker = v2 ?? byController.get('pids')!;
  const layout = !v2 ? 'v1' : all.some((h) => h.version === 1) ? 'hybrid' : 'v2';
  return { byController, tracker, all, layout };
}

interface MountInfo {
  fstype: string;
  mountPoint: string;
  /** the cgroup path (inside the hierarchy) that this mount shows as its root */
  root: string;
  superOptions: string[];
}

function readMounts(mountinfo: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const [fstype, , superOpts] = post;
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    out.push({
      fstype,
      root: unescapeMount(pre[3] ?? '/'),
      mountPoint: unescapeMount(pre[4] ?? ''),
      superOptions: (superOpts ?? '').split(','),
    });
  }
  return out;
}

/** mountinfo writes space, tab, newline and backslash as octal escapes */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** the server's own cgroup per hierarchy: key '' for v2, else each v1 controller name */
function ownCgroups(procSelfCgroup: string): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of procSelfCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, ctrls, p] = m as unknown as [string, string, string];
    if (ctrls === '') own.set('', p);
    else for (const c of ctrls.split(',')) own.set(c, p);
  }
  return own;
}

/** the directory of cgroup `cg` (a path inside the hierarchy) under a mount of that hierarchy */
function dirOf(mount: MountInfo, cg: string): string {
  const rel = mount.root !== '/' && cg.startsWith(mount.root) ? cg.slice(mount.root.length) : cg;
  return path.join(mount.mountPoint, rel);
}
