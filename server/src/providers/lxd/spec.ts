import type { LxdTemplate } from '@vdi/shared';
import { ProviderError, type DesktopHandle } from '../types.js';

/** What the store keeps about an LXD desktop. */
export interface LxdHandle {
  /** container name */
  name: string;
  /** cluster member running it ('none' when LXD is not clustered) */
  member: string;
  /** dedicated: stopped and kept at log-off */
  persistent: boolean;
}

/**
 * Container name of a desktop: LXD names are letters, digits and '-', at most 63, starting
 * with a letter.
 */
export function containerName(desktopId: string): string {
  const clean = desktopId.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `vdi-${clean}`.slice(0, 63).replace(/-+$/, '');
}

/** CPU cap as LXD config: a whole number of CPUs and a hard time allowance per 100 ms. */
export function cpuConfig(cpuMax: number): Record<string, string> {
  if (cpuMax <= 0) return {};
  return {
    'limits.cpu': String(Math.max(1, Math.ceil(cpuMax))),
    'limits.cpu.allowance': `${Math.max(1, Math.round(cpuMax * 100))}ms/100ms`,
  };
}

/** The container's config keys: isolation, limits from the pool, and our own markers. */
export function containerConfig(
  t: LxdTemplate,
  marks: { desktopId: string; poolId: string; node: string; persistent: boolean },
): Record<string, string> {
  const c: Record<string, string> = {
    // each container its own host uid range: a break-out is a nobody to every other one
    'security.idmap.isolated': 'true',
    'security.privileged': 'false',
    'security.nesting': 'false',
    ...cpuConfig(t.limits.cpuMax),
    'user.vdi.desktop': marks.desktopId,
    'user.vdi.pool': marks.poolId,
    'user.vdi.node': marks.node,
    'user.vdi.persistent': String(marks.persistent),
    // the image reads its screen size from the init process environment
    'environment.VDI_GEOMETRY': `${t.width}x${t.height}`,
  };
  if (t.limits.memoryMb > 0) {
    c['limits.memory'] = `${t.limits.memoryMb}MiB`;
    c['limits.memory.enforce'] = 'hard';
  }
  if (t.limits.pids > 0) c['limits.processes'] = String(t.limits.pids);
  return c;
}

export function parseLxdHandle(handle: DesktopHandle): LxdHandle {
  const { name, member, persistent } = handle;
  if (typeof name !== 'string' || !/^[a-z][a-z0-9-]{0,62}$/.test(name)) {
    throw new ProviderError('LXD_BAD_HANDLE', 'lxd desktop handle lacks a container name');
  }
  return {
    name,
    member: typeof member === 'string' ? member : 'none',
    persistent: persistent === true,
  };
}
