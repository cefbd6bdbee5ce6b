import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QemuHandle } from '../../../src/providers/qemu/handle.js';
import { QemuProvider } from '../../../src/providers/qemu/provider.js';
import { ProviderError } from '../../../src/providers/types.js';

// The parts of the qemu provider that need no QEMU; real VMs are in
// test/integration/qemu-provider.test.ts.

let root: string;
const log = pino({ level: 'silent' });

beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-qemu-unit-'));
});
afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

function handle(over: Partial<QemuHandle> = {}): QemuHandle {
  return {
    desktopId: 'd1',
    // pid_max is at most 2^22: this pid never exists
    pid: 4_194_305,
    startTime: '12345',
    qmpPath: path.join(root, 'qemu-d1.qmp'),
    vncPath: path.join(root, 'qemu-d1.vnc'),
    pidPath: path.join(root, 'qemu-d1.pid'),
    logPath: path.join(root, 'qemu-d1.log'),
    overlayPath: path.join(root, 'd1.qcow2'),
    goldenPath: path.join(root, 'golden.qcow2'),
    accel: 'tcg',
    memoryMb: 512,
    vcpus: 2,
    ...over,
  };
}

describe('QemuProvider without QEMU', () => {
  const dirs = () => ({ runDir: path.join(root, 'run'), dataDir: path.join(root, 'data') });

  it('reports a dead desktop for a bogus handle or a gone process', async () => {
    const p = new QemuProvider(dirs());
    expect(await p.health({ nope: 1 })).toMatchObject({
      state: 'dead',
      reason: expect.stringMatching(/not a qemu desktop handle/),
    });
    expect(await p.health(handle())).toMatchObject({
      state: 'dead',
      reason: expect.stringMatching(/is gone/),
    });
    // our own pid with another start time: a reused pid
    expect(await p.health(handle({ pid: process.pid }))).toMatchObject({
      state: 'dead',
      reason: expect.stringMatching(/another process/),
    });
  });

  it('describes a desktop and gives its unix endpoint', () => {
    const p = new QemuProvider(dirs(), { hostName: 'h1' });
    expect(p.describe(handle())).toEqual({
      accel: 'TCG',
      memory: '512 MiB',
      vcpus: '2',
      host: 'h1',
    });
    expect(p.describe(handle({ host: 'h2' })).host).toBe('h2');
    expect(p.describe(handle({ accel: 'kvm' })).accel).toBe('KVM');
    expect(p.endpoint(handle())).toEqual({ kind: 'unix', path: path.join(root, 'qemu-d1.vnc') });
    expect(() => p.endpoint({ vncPath: 1 })).toThrow(ProviderError);
  });

  it('validates snapshot names before talking to QEMU', async () => {
    const p = new QemuProvider(dirs());
    for (const bad of ['', 'a b', 'x;quit', '../x', 'a'.repeat(65)]) {
      await expect(p.snapshot(handle(), bad)).rejects.toMatchObject({
        code: 'QEMU_BAD_SNAPSHOT_NAME',
      });
      await expect(p.restore(handle(), bad)).rejects.toMatchObject({
        code: 'QEMU_BAD_SNAPSHOT_NAME',
      });
    }
  });

  it('fails clearly when KVM is required but unusable, leaving no files', async () => {
    const golden = path.join(root, 'golden.qcow2');
    await fs.writeFile(golden, '');
    const p = new QemuProvider(dirs(), { accel: 'kvm', kvmDevice: path.join(root, 'no-kvm') });
    const spec = { desktopId: 'd1', poolId: 'p', template: { image: golden }, persistent: false };
    await expect(p.create(spec, log)).rejects.toMatchObject({ code: 'QEMU_KVM_UNAVAILABLE' });
    expect(await fs.readdir(path.join(root, 'data', 'qemu'))).toEqual([]);
    await expect(p.create({ ...spec, desktopId: 'a/b' }, log)).rejects.toMatchObject({
      code: 'QEMU_BAD_ID',
    });
    await expect(
      p.create({ ...spec, template: { image: path.join(root, 'missing.qcow2') } }, log),
    ).rejects.toMatchObject({
      code: 'QEMU_IMAGE_MISSING',
    });
    await expect(
      p.create({ ...spec, template: { image: golden, memoryMb: 1 } }, log),
    ).rejects.toThrow();
  });

  it('falls back to TCG in auto mode and says why', async () => {
    // /bin/true stands in for binaries that run
    const p = new QemuProvider(dirs(), {
      kvmDevice: path.join(root, 'no-kvm'),
      qemuBinary: '/bin/true',
      qemuImgBinary: '/bin/true',
    });
    const status = await p.status();
    expect(status).toEqual({
      ok: true,
      detail: expect.stringMatching(/TCG \(.*no-kvm cannot be opened read-write \(ENOENT\)\)/),
    });
    expect((await fs.stat(path.join(root, 'run', 'qemu'))).mode & 0o777).toBe(0o700);
  });

  it('is not ready without its binaries', async () => {
    const p = new QemuProvider(dirs(), { qemuBinary: path.join(root, 'no-qemu') });
    const status = await p.status();
    expect(status.ok).toBe(false);
    expect(status.detail).toMatch(/no-qemu does not run/);
  });
});
