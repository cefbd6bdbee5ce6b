import { describe, expect, it } from 'vitest';
import { QemuTemplate, XvncTemplate } from '@vdi/shared';

// A pool's network and limits: defaults that run a desktop, and clear refusals of values
// that could not.

describe('pool templates: network and limits', () => {
  it('defaults: outbound network; 4 GiB, 1024 tasks for desktops; automatic memory for VMs', () => {
    expect(XvncTemplate.parse({})).toMatchObject({
      network: 'outbound',
      limits: { cpuWeight: 100, cpuMax: 0, memoryMb: 4096, pids: 1024, diskMb: 0 },
    });
    expect(QemuTemplate.parse({ image: '/x.qcow2' }).limits).toEqual({
      cpuWeight: 100,
      cpuMax: 0,
      memoryMb: 0,
      pids: 256,
      diskMb: 0,
    });
  });

  it('keeps the defaults of the limits not given', () => {
    expect(XvncTemplate.parse({ limits: { pids: 64 } }).limits).toMatchObject({
      pids: 64,
      memoryMb: 4096,
    });
  });

  it('refuses limits no desktop can run within, and unknown networks', () => {
    const issue = (r: { success: boolean; error?: { issues: Array<{ message: string }> } }) =>
      r.success ? '' : r.error!.issues.map((i) => i.message).join('; ');
    expect(issue(XvncTemplate.safeParse({ limits: { memoryMb: 10 } }))).toMatch(/at least 64 MiB/);
    expect(issue(XvncTemplate.safeParse({ limits: { pids: 3 } }))).toMatch(/at least 16/);
    expect(issue(XvncTemplate.safeParse({ limits: { cpuWeight: 0 } }))).not.toBe('');
    expect(XvncTemplate.safeParse({ network: 'lan' }).success).toBe(false);
    expect(XvncTemplate.safeParse({ limits: { nice: 5 } }).success).toBe(false);
    expect(
      issue(QemuTemplate.safeParse({ image: '/x', memoryMb: 512, limits: { memoryMb: 520 } })),
    ).toMatch(/beyond the VM's memory/);
    expect(
      QemuTemplate.safeParse({ image: '/x', memoryMb: 512, limits: { memoryMb: 1024 } }).success,
    ).toBe(true);
  });
});
