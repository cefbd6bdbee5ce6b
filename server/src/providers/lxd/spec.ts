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
  if (t.vm !== undefined) {
    c['environment.VDI_ROLE'] = 'vm';
    c['environment.VDI_VM_MEMORY'] = String(t.vm.memoryMb);
    c['environment.VDI_VM_CPUS'] = String(t.vm.vcpus);
    if (t.vm.append !== undefined) c['environment.VDI_VM_APPEND'] = t.vm.append;
  }
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

/** A VM desktop's files from the members' shared storage, read-only where the image looks. */
export function vmDevices(t: LxdTemplate): Record<string, Record<string, string>> {
  if (t.vm === undefined) return {};
  const file = (source: string, at: string) => ({
    type: 'disk',
    source,
    path: at,
    readonly: 'true',
  });
  return {
    golden: file(t.vm.image, '/vdi/golden.qcow2'),
    ...(t.vm.kernel !== undefined ? { kernel: file(t.vm.kernel, '/vdi/vmlinuz') } : {}),
    ...(t.vm.initrd !== undefined ? { initrd: file(t.vm.initrd, '/vdi/initrd.img') } : {}),
  };
}
