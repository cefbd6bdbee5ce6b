import { describe, expect, it } from 'vitest';
import { LxdTemplate } from '@vdi/shared';
import {
  containerConfig,
  containerName,
  cpuConfig,
  parseLxdHandle,
  vmDevices,
} from '../../../src/providers/lxd/spec.js';
import { movedName } from '../../../src/providers/lxd/vm-move.js';

const marks = { desktopId: 'd', poolId: 'p', node: 'n', persistent: false };

describe('lxd container spec', () => {
  it('names containers as LXD allows (letters, digits, dashes, at most 63)', () => {
    expect(containerName('3F2B_x.y')).toBe('vdi-3f2b-x-y');
    const long = containerName('a'.repeat(100));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[a-z][a-z0-9-]*[a-z0-9]$/);
  });

  it('turns a CPU cap into whole CPUs and a hard allowance', () => {
    expect(cpuConfig(0)).toEqual({});
    expect(cpuConfig(0.25)).toEqual({ 'limits.cpu': '1', 'limits.cpu.allowance': '25ms/100ms' });
    expect(cpuConfig(1.5)).toEqual({ 'limits.cpu': '2', 'limits.cpu.allowance': '150ms/100ms' });
  });

  it('isolates ids and sets the pool limits; 0 leaves a limit unset', () => {
    const c = containerConfig(LxdTemplate.parse({ limits: { memoryMb: 512, pids: 300 } }), marks);
    expect(c).toMatchObject({
      'security.idmap.isolated': 'true',
      'security.privileged': 'false',
      'limits.memory': '512MiB',
      'limits.processes': '300',
      'environment.VDI_GEOMETRY': '1280x800',
      'user.vdi.desktop': 'd',
    });
    const none = containerConfig(LxdTemplate.parse({ limits: { memoryMb: 0, pids: 0 } }), marks);
    expect(none['limits.memory']).toBeUndefined();
    expect(none['limits.processes']).toBeUndefined();
  });

  it('refuses templates and handles it cannot use', () => {
    expect(() => LxdTemplate.parse({ image: '../etc' })).toThrow();
    expect(() => LxdTemplate.parse({ network: 'br0; rm' })).toThrow();
    expect(() => LxdTemplate.parse({ placement: 'random' })).toThrow();
    expect(() => parseLxdHandle({ name: '../../x' })).toThrow(/container name/);
    expect(parseLxdHandle({ name: 'vdi-a', member: 'm2', persistent: true })).toEqual({
      name: 'vdi-a',
      member: 'm2',
      persistent: true,
    });
  });

  it('a VM template sets the image role and mounts its files read-only; an X11 one neither', () => {
    const vm = LxdTemplate.parse({
      vm: { image: '/srv/g.qcow2', kernel: '/srv/k', append: 'console=tty0', memoryMb: 512 },
    });
    expect(containerConfig(vm, marks)).toMatchObject({
      'environment.VDI_ROLE': 'vm',
      'environment.VDI_VM_MEMORY': '512',
      'environment.VDI_VM_CPUS': '1',
      'environment.VDI_VM_APPEND': 'console=tty0',
    });
    expect(vmDevices(vm)).toEqual({
      golden: { type: 'disk', source: '/srv/g.qcow2', path: '/vdi/golden.qcow2', readonly: 'true' },
      kernel: { type: 'disk', source: '/srv/k', path: '/vdi/vmlinuz', readonly: 'true' },
    });
    const x11 = LxdTemplate.parse({});
    expect(containerConfig(x11, marks)['environment.VDI_ROLE']).toBeUndefined();
    expect(vmDevices(x11)).toEqual({});
    // the files are paths on the members: relative ones are refused
    expect(() => LxdTemplate.parse({ vm: { image: 'g.qcow2' } })).toThrow();
  });

  it("a moved VM's container alternates between two names LXD accepts", () => {
    const base = containerName('a'.repeat(100));
    const moved = movedName(base, base);
    expect(moved).not.toBe(base);
    expect(moved.length).toBeLessThanOrEqual(63);
    expect(moved).toMatch(/^[a-z][a-z0-9-]*[a-z0-9]$/);
    expect(movedName(moved, base)).toBe(base);
  });
});
