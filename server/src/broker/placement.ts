import type { PlacementPolicy } from '@vdi/shared';

/**
 * Where a new desktop goes among the hosts of a cluster (issue 11), like Azure Virtual
 * Desktop's host pools: breadth-first spreads desktops over the least loaded hosts,
 * depth-first fills one host up to its maximum before the next. A user with a desktop on a
 * host goes back to that host while it takes new desktops. Pure: the broker gathers the
 * hosts and their load, this only decides.
 */

export interface HostLoad {
  /** host name (the LXD cluster member's name) */
  name: string;
  /** 'draining' and 'down' hosts take no new desktops; 'down' also covers an offline member */
  state: 'active' | 'draining' | 'down';
  /** most desktops this host may run; 0 = no limit */
  maxSessions: number;
  /** desktops it runs now */
  sessions: number;
}

export interface PlacementRequest {
  policy: PlacementPolicy;
  hosts: readonly HostLoad[];
  /** hosts where this user already has a desktop, most recent first */
  userHosts?: readonly string[];
}

export type Placement =
  | { ok: true; host: string; reason: 'user-host' | 'least-loaded' | 'fill-first' }
  | { ok: false; code: 'NO_HOSTS' | 'ALL_HOSTS_FULL'; message: string };

function hasRoom(h: HostLoad): boolean {
  return h.state === 'active' && (h.maxSessions === 0 || h.sessions < h.maxSessions);
}

/** Share of its maximum a host uses (hosts without a maximum count their desktops). */
function loadOf(h: HostLoad): number {
  return h.maxSessions === 0 ? h.sessions : h.sessions / h.maxSessions;
}

export function placeDesktop(req: PlacementRequest): Placement {
  const open = req.hosts.filter(hasRoom);
  if (open.length === 0) {
    return req.hosts.some((h) => h.state === 'active')
      ? {
          ok: false,
          code: 'ALL_HOSTS_FULL',
          message: 'every active host runs its maximum of desktops',
        }
      : { ok: false, code: 'NO_HOSTS', message: 'no host takes new desktops (drained or down)' };
  }
  for (const name of req.userHosts ?? []) {
    const h = open.find((o) => o.name === name);
    if (h !== undefined) return { ok: true, host: h.name, reason: 'user-host' };
  }
  // ties go to the name that sorts first, so a decision can be replayed
  const byName = [...open].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (req.policy === 'depth-first') {
    // the fullest host that still has room; hosts without a maximum come last
    const best = byName.reduce((a, b) => {
      const la = a.maxSessions === 0 ? -1 : a.sessions;
      const lb = b.maxSessions === 0 ? -1 : b.sessions;
      return lb > la ? b : a;
    });
    return { ok: true, host: best.name, reason: 'fill-first' };
  }
  const best = byName.reduce((a, b) => (loadOf(b) < loadOf(a) ? b : a));
  return { ok: true, host: best.name, reason: 'least-loaded' };
}
