import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino, type Logger } from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QemuHandle } from '../../src/providers/qemu/handle.js';
import { QemuProvider, type QemuProviderOptions } from '../../src/providers/qemu/provider.js';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type ProviderDirs,
} from '../../src/providers/types.js';
import { GUEST_DIR, mountCount, readGuestFile, sha256File } from '../helpers/guest.js';
import { parsePpm, screendump, typeText } from '../helpers/qemu-console.js';
import { until } from '../helpers/server.js';

/*
 * A real VM from the test guest (infra/guest/build-guest.sh): busybox on the VGA console,
 * an ext4 disk at /data. Keys are typed with QMP send-key; what the guest wrote is read
 * back offline from the overlay (qemu-img convert to raw, then debugfs), which needs no
 * mounting. One VM is shared across the cases where possible: a TCG boot costs seconds.
 */

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const kvmOpens = await fs.open('/dev/kvm', 'r+').then(
  async (fh) => {
    await fh.close();
    return true;
  },
  () => false,
);
const kvmHardware = (await fs.readdir('/sys/module').catch(() => [] as string[])).some(
  (m) => m === 'kvm_intel' || m === 'kvm_amd',
);
/** what 'auto' should choose: KVM over hardware virtualisation only (not e.g. kvm_pvm) */
const kvmUsable = kvmOpens && kvmHardware;

/** time the guest gets to boot and run a typed command */
const GUEST_TIMEOUT_MS = 90_000;
/** re-type a command this often while its effect has not shown (keys typed before the shell starts are lost) */
const RETYPE_EVERY_MS = 5_000;
const HEALTH_TIMEOUT_MS = 1_500;

let root: string;
let dirs: ProviderDirs;
let template: Record<string, unknown>;
let goldenSha: string;
let goldenMode: number;
const logLines: string[] = [];
let log: Logger;
/** every VM the tests started, to be killed in afterAll whatever happened */
const started: QemuHandle[] = [];

/**
 * Waits until the guest has booted: its /init mounts /data right before it starts the
 * shell, and the mount shows in the disk's superblock. Keys typed earlier could reach the
 * firmware or the kernel's keyboard probe instead of the shell.
 */
async function waitBooted(
  handle: QemuHandle,
  mountsBefore: number,
  since: number,
): Promise<number> {
  await until(
    async () => (await mountCount(handle.overlayPath)) > mountsBefore,
    GUEST_TIMEOUT_MS,
    'the guest to mount /data',
    250,
  );
  const bootMs = Date.now() - since;
  console.log(
    `${handle.desktopId} (${handle.accel.toUpperCase()}): create() to a booted guest took ${bootMs} ms`,
  );
  return bootMs;
}

async function createBooted(p: QemuProvider, s: CreateSpec): Promise<QemuHandle> {
  const before = s.persistent
    ? await mountCount(path.join(dirs.dataDir, 'qemu', `${s.desktopId}.qcow2`))
    : 0;
  const t0 = Date.now();
  const handle = await create(p, s);
  await waitBooted(handle, before, t0);
  return handle;
}

/** Types a shell command into the guest until `done` sees its effect. */
async function runInGuest(
  handle: DesktopHandle,
  command: string,
  done: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + GUEST_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await typeText(handle, `${command}\n`, 20);
    const retypeAt = Math.min(deadline, Date.now() + RETYPE_EVERY_MS);
    while (Date.now() < retypeAt) {
      if (await done()) return;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  // keep what the screen showed for whoever debugs this
  const shot = path.join(os.tmpdir(), `vdi-qemu-test-failure-${Date.now()}.ppm`);
  await screendump(handle, shot).catch(() => undefined);
  throw new Error(`the guest did not run: ${command} (its screen: ${shot})`);
}

async function writeInGuest(handle: QemuHandle, file: string, token: string): Promise<void> {
  await runInGuest(
    handle,
    `echo ${token} > /data${file}; sync`,
    async () => (await readGuestFile(handle.overlayPath, file))?.trim() === token,
  );
}

async function rfbBanner(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ path: socketPath });
    let got = '';
    s.setTimeout(5000, () => reject(new Error('no RFB banner')));
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.length >= 12) {
        s.destroy();
        resolve(got.slice(0, 12));
      }
    });
    s.on('error', reject);
  });
}

function pixel(rgb: Buffer, channels: number, width: number, x: number, y: number): number[] {
  const i = (y * width + x) * channels;
  return [...rgb.subarray(i, i + 3)];
}

/** lit pixels of a screendump, split into the top two text rows and the rest */
async function screenPixels(
  handle: DesktopHandle,
): Promise<{ width: number; height: number; top: number; below: number }> {
  const file = path.join(root, 'screen.ppm');
  await screendump(handle, file);
  const img = parsePpm(await fs.readFile(file));
  let top = 0;
  let below = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 3;
      if (img.rgb[i]! + img.rgb[i + 1]! + img.rgb[i + 2]! > 60) {
        // VGA text rows are 16 px high
        if (y < 32) top++;
        else below++;
      }
    }
  }
  return { width: img.width, height: img.height, top, below };
}

function provider(opts: QemuProviderOptions = {}): QemuProvider {
  return new QemuProvider(dirs, { healthTimeoutMs: HEALTH_TIMEOUT_MS, ...opts });
}

function spec(desktopId: string, persistent: boolean): CreateSpec {
  return { desktopId, poolId: 'pool-1', template, persistent };
}

async function create(p: QemuProvider, s: CreateSpec): Promise<QemuHandle> {
  const handle = (await p.create(s, log)) as QemuHandle;
  started.push(handle);
  return handle;
}

beforeAll(async () => {
  const { stdout } = await execFileAsync(
    path.join(repoRoot, 'infra/guest/build-guest.sh'),
    [GUEST_DIR],
    { timeout: 120_000 },
  );
  expect(stdout).toContain('image=');
  // short: unix socket paths are limited to 107 bytes
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-qemu-'));
  dirs = { runDir: path.join(root, 'run'), dataDir: path.join(root, 'data') };
  // as the Xvnc provider leaves it: traversable, so that its desktop user reaches its own dir
  await fs.mkdir(dirs.runDir, { mode: 0o711 });
  await fs.chmod(dirs.runDir, 0o711);
  template = {
    image: path.join(GUEST_DIR, 'golden.qcow2'),
    kernel: path.join(GUEST_DIR, 'vmlinuz'),
    initrd: path.join(GUEST_DIR, 'initrd.img'),
    append: 'console=tty0 quiet',
    memoryMb: 256,
    vcpus: 1,
  };
  goldenSha = await sha256File(template.image as string);
  goldenMode = (await fs.stat(template.image as string)).mode;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString('utf8'));
      cb();
    },
  });
  log = pino({ level: 'debug' }, sink);
});

afterAll(async () => {
  for (const h of started) {
    try {
      process.kill(-h.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  if (root) await fs.rm(root, { recursive: true, force: true });
});

describe('QemuProvider with a real VM', () => {
  const qemu = () => provider();
  let vm: QemuHandle;
  let createdAt = 0;

  it('reports its status and validates templates', async () => {
    const status = await qemu().status();
    expect(status.ok).toBe(true);
    expect(status.detail).toMatch(kvmUsable ? /KVM/ : /TCG/);
    expect(() => qemu().parseTemplate({ image: '' })).toThrow();
    expect(qemu().parseTemplate({ image: '/x.qcow2' })).toMatchObject({ memoryMb: 256, vcpus: 1 });
    await expect(
      qemu().create(
        { ...spec('bad', false), template: { ...template, image: path.join(root, 'nope.qcow2') } },
        log,
      ),
    ).rejects.toMatchObject({
      code: 'QEMU_IMAGE_MISSING',
    });
    await expect(qemu().create(spec('../escape', false), log)).rejects.toMatchObject({
      code: 'QEMU_BAD_ID',
    });
  });

  it('boots a linked clone of the golden image', async () => {
    const p = qemu();
    createdAt = Date.now();
    vm = await create(p, spec('desk-1', true));
    console.log(`create() resolved after ${Date.now() - createdAt} ms (${vm.accel})`);
    expect(vm.overlayPath).toBe(path.join(dirs.dataDir, 'qemu', 'desk-1.qcow2'));
    expect(vm.accel).toBe(kvmUsable ? 'kvm' : 'tcg');
    expect(JSON.parse(JSON.stringify(vm))).toEqual(vm);

    const { stdout } = await execFileAsync('qemu-img', [
      'info',
      '-U',
      '--output=json',
      vm.overlayPath,
    ]);
    const info = JSON.parse(stdout) as Record<string, unknown>;
    expect(info.format).toBe('qcow2');
    expect(info['backing-filename']).toBe(template.image);
    expect(info['backing-filename-format']).toBe('qcow2');

    // the golden image is never a drive of its own: only the overlay is
    const argv = (await fs.readFile(`/proc/${vm.pid}/cmdline`, 'utf8')).split('\0');
    expect(argv.some((a) => a.includes('golden.qcow2'))).toBe(false);
    expect(argv).toContain('-nic');
    if (process.getuid?.() === 0) {
      const status = await fs.readFile(`/proc/${vm.pid}/status`, 'utf8');
      // its own account (no passwd entry), under seccomp, in its own cgroup
      expect(vm.runAs?.user).toMatch(/^vdi-\d+$/);
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(vm.runAs!.uid));
      expect(/^Seccomp:\s+(\d+)/m.exec(status)?.[1]).toBe('2');
      expect(argv.join(' ')).toContain('-sandbox on,obsolete=deny,spawn=deny,resourcecontrol=deny');
      expect(vm.cgroup?.dirs.length).toBeGreaterThan(0);
      const procs = await fs.readFile(path.join(vm.cgroup!.dirs[0]!, 'cgroup.procs'), 'utf8');
      expect(procs.split('\n')).toContain(String(vm.pid));
      // the pool's RAM plus QEMU's own overhead, when the pool sets no memory limit
      expect(vm.memoryLimitMb).toBe(256 + 512);
      expect((await fs.stat(vm.overlayPath)).uid).toBe(vm.runAs!.uid);
    }
    // sockets in a private directory; the shared run dir keeps the mode others gave it
    expect((await fs.stat(path.join(dirs.runDir, 'qemu'))).mode & 0o777).toBe(0o700);
    expect((await fs.stat(dirs.runDir)).mode & 0o777).toBe(0o711);

    expect(await p.health(vm)).toEqual({ state: 'running' });
    expect(p.endpoint(vm)).toEqual({
      kind: 'unix',
      path: path.join(dirs.runDir, 'qemu', 'desk-1.vnc'),
    });
    expect(await rfbBanner(vm.vncPath)).toMatch(/^RFB 003\.00\d\n$/);
    expect(p.describe(vm)).toEqual({
      accel: kvmUsable ? 'KVM' : 'TCG',
      memory: '256 MiB',
      vcpus: '1',
      host: os.hostname(),
      ...(vm.runAs ? { account: `${vm.runAs.user} (uid ${vm.runAs.uid})` } : {}),
    });
    expect(logLines.join('')).toContain(
      kvmUsable ? 'qemu desktop started with KVM' : 'qemu desktop started with TCG',
    );

    await expect(p.create(spec('desk-1', true), log)).rejects.toMatchObject({
      code: 'QEMU_ALREADY_RUNNING',
    });
  });

  it('shows the guest console on the VGA screen, in colour', async () => {
    await waitBooted(vm, 0, createdAt);
    const ppmFile = path.join(root, 'colour.ppm');
    // the banner row is yellow on blue across all 80 columns (VGA blue is 0,0,168)
    const ppm = await until(
      async () => {
        await screendump(vm, ppmFile);
        const img = parsePpm(await fs.readFile(ppmFile));
        return pixel(img.rgb, 3, img.width, 715, 8).join() === '0,0,168' ? img : undefined;
      },
      20_000,
      'the blue banner',
      200,
    );
    // VGA text mode 80x25 with a 9x16 font
    expect([ppm.width, ppm.height]).toEqual([720, 400]);

    // PNG (QEMU >= 7.1 built with libpng) suits thumbnails better, where this QEMU has it
    const png = path.join(root, 'screen.png');
    try {
      await screendump(vm, png, { format: 'png' });
    } catch (err) {
      expect((err as ProviderError).code).toBe('QMP_COMMAND');
      console.log(`this QEMU has no PNG screendump: ${(err as Error).message}`);
      return;
    }
    const decoded = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([decoded.info.width, decoded.info.height]).toEqual([720, 400]);
    // the same colours as the PPM (upstream QEMU 7.2.0 swapped red and blue in PNGs, issue 1622)
    for (const [x, y] of [
      [715, 8],
      [300, 8],
      [100, 300],
    ] as const) {
      expect(pixel(decoded.data, decoded.info.channels, 720, x, y)).toEqual(
        pixel(ppm.rgb, 3, 720, x, y),
      );
    }
  });

  it('takes keys on its console and shows the output', async () => {
    await writeInGuest(vm, '/f', 'TOKEN123');
    console.log(
      `guest (${vm.accel}) ran a typed command ${Date.now() - createdAt} ms after create() was called`,
    );

    const before = await screenPixels(vm);
    expect(before.below).toBeGreaterThan(500); // banner, prompt, typed lines
    await typeText(vm, 'clear\n', 20);
    // cleared: only the prompt (and the cursor) on the first row remain
    const after = await until(
      async () => {
        const px = await screenPixels(vm);
        return px.below === 0 && px.top > 0 ? px : undefined;
      },
      20_000,
      'a cleared screen',
      200,
    );
    expect(after.top).toBeGreaterThan(50);
  });

  it('is found again by a fresh provider (server restart)', async () => {
    const fresh = provider();
    const stored = JSON.parse(JSON.stringify(vm)) as DesktopHandle;
    expect(await fresh.health(stored)).toEqual({ state: 'running' });
    expect(fresh.endpoint(stored)).toEqual({ kind: 'unix', path: vm.vncPath });
    // a handle whose pid now belongs to another process is dead, not ours
    expect(await fresh.health({ ...stored, startTime: '1' })).toMatchObject({
      state: 'dead',
      reason: expect.stringMatching(/another process/),
    });
    expect(await fresh.health({ bogus: true })).toMatchObject({ state: 'dead' });
  });

  it('reports a stopped QEMU as unresponsive and recovers after SIGCONT', async () => {
    const p = qemu();
    process.kill(vm.pid, 'SIGSTOP');
    try {
      const started = Date.now();
      const health = await until(
        async () => {
          const h = await p.health(vm);
          return h.state === 'unresponsive' ? h : undefined;
        },
        10_000,
        'unresponsive',
        200,
      );
      expect(Date.now() - started).toBeLessThan(HEALTH_TIMEOUT_MS * 3);
      expect(health).toMatchObject({
        reason: expect.stringMatching(/QMP did not answer.*stopped/),
      });
    } finally {
      process.kill(vm.pid, 'SIGCONT');
    }
    await until(async () => (await p.health(vm)).state === 'running', 15_000, 'running again', 200);
  });

  it('pauses, continues, and boots again after a guest power-off', async () => {
    const p = qemu();
    await p.powerAction(vm, 'stop');
    expect(await p.health(vm)).toMatchObject({ state: 'paused' });
    await p.powerAction(vm, 'cont');
    expect(await p.health(vm)).toEqual({ state: 'running' });

    // -no-shutdown keeps QEMU after the guest powers off, for an admin to reset it
    await typeText(vm, 'poweroff -f\n', 20);
    const off = await until(
      async () => {
        const h = await p.health(vm);
        return h.state === 'unresponsive' ? h : undefined;
      },
      30_000,
      'the guest to power off',
      200,
    );
    expect(off.reason).toMatch(/shut down/);
    const mounts = await mountCount(vm.overlayPath);
    const t0 = Date.now();
    await p.powerAction(vm, 'reset');
    expect(await p.health(vm)).toEqual({ state: 'running' });
    await waitBooted(vm, mounts, t0);
  });

  it('takes and restores internal snapshots', async () => {
    const p = qemu();
    await expect(p.snapshot(vm, 'bad name; quit')).rejects.toMatchObject({
      code: 'QEMU_BAD_SNAPSHOT_NAME',
    });
    await p.snapshot(vm, 'clean');
    expect(await p.listSnapshots(vm)).toEqual(['clean']);
    expect(await p.health(vm)).toEqual({ state: 'running' });

    await writeInGuest(vm, '/g', 'AFTER-SNAPSHOT');
    await p.restore(vm, 'clean');
    expect(await p.health(vm)).toEqual({ state: 'running' });
    // the disk is back as it was: /f from before the snapshot, no /g
    expect(await readGuestFile(vm.overlayPath, '/g')).toBeUndefined();
    expect((await readGuestFile(vm.overlayPath, '/f'))?.trim()).toBe('TOKEN123');
    // and so is the guest's memory: its shell still works and sees the same disk
    await writeInGuest(vm, '/h', 'AFTER-RESTORE');
    expect(await readGuestFile(vm.overlayPath, '/g')).toBeUndefined();
    await expect(p.restore(vm, 'missing')).rejects.toMatchObject({ code: 'QEMU_NO_SNAPSHOT' });
  });

  it('keeps a dedicated desktop’s disk across destroy and create', async () => {
    const p = qemu();
    await p.destroy(vm, log, { keepDisk: true });
    expect(await p.health(vm)).toMatchObject({ state: 'dead' });
    await expect(fs.access(vm.qmpPath)).rejects.toThrow();
    await expect(fs.access(vm.vncPath)).rejects.toThrow();
    expect((await readGuestFile(vm.overlayPath, '/f'))?.trim()).toBe('TOKEN123');

    vm = await createBooted(p, spec('desk-1', true));
    expect(await p.health(vm)).toEqual({ state: 'running' });
    expect((await readGuestFile(vm.overlayPath, '/f'))?.trim()).toBe('TOKEN123');
    expect(await p.listSnapshots(vm)).toEqual(['clean']);
  });

  it('sweeps VMs that no record accounts for and purges kept disks', async () => {
    const p = qemu();
    const orphan = await create(p, spec('desk-orphan', true));
    expect(await p.sweep([JSON.parse(JSON.stringify(vm)) as DesktopHandle], log)).toBe(1);
    expect(await p.health(orphan)).toMatchObject({ state: 'dead' });
    expect(await p.health(vm)).toEqual({ state: 'running' });
    await expect(fs.access(orphan.overlayPath)).resolves.toBeUndefined();
    await p.purge('desk-orphan');
    await expect(fs.access(orphan.overlayPath)).rejects.toThrow();
    await expect(p.purge('desk-1')).rejects.toMatchObject({ code: 'QEMU_ALREADY_RUNNING' });
    expect(await p.sweep([vm], log)).toBe(0);
  });

  it('gives the next user of a floating pool a clean machine (destroy, then create)', async () => {
    const p = qemu();
    const old = vm;
    const t0 = Date.now();
    // what the broker does at log-off and at the next connect
    await p.destroy(vm, log, { keepDisk: false });
    vm = (await p.create(spec('desk-1', false), log)) as QemuHandle;
    started.push(vm);
    expect(vm.pid).not.toBe(old.pid);
    expect(await qemu().health(old)).toMatchObject({ state: 'dead' });
    expect(await p.health(vm)).toEqual({ state: 'running' });
    expect(await readGuestFile(vm.overlayPath, '/f')).toBeUndefined();
    expect(await p.listSnapshots(vm)).toEqual([]);

    // create() of a non-persistent desktop never reuses a disk left behind either
    await waitBooted(vm, 0, t0);
    await writeInGuest(vm, '/f', 'LEFT-BEHIND');
    await p.destroy(vm, log, { keepDisk: true });
    vm = await create(p, spec('desk-1', false));
    expect(await readGuestFile(vm.overlayPath, '/f')).toBeUndefined();
  });

  it('reports a killed QEMU as dead and still cleans up after it', async () => {
    const p = qemu();
    process.kill(-vm.pid, 'SIGKILL');
    const health = await until(
      async () => {
        const h = await p.health(vm);
        return h.state === 'dead' ? h : undefined;
      },
      10_000,
      'dead',
      200,
    );
    expect(health.state).toBe('dead');
    await p.destroy(vm, log);
    await expect(fs.access(vm.overlayPath)).rejects.toThrow();
    await expect(fs.access(vm.qmpPath)).rejects.toThrow();
    // destroying twice is harmless
    await p.destroy(vm, log);
  });

  it('boots with TCG when forced', async () => {
    const p = provider({ accel: 'tcg' });
    const t0 = Date.now();
    const tcg = await createBooted(p, spec('desk-tcg', false));
    expect(tcg.accel).toBe('tcg');
    expect(p.describe(tcg).accel).toBe('TCG');
    const argv = (await fs.readFile(`/proc/${tcg.pid}/cmdline`, 'utf8')).split('\0');
    expect(argv).toContain('q35,accel=tcg');
    expect(await p.health(tcg)).toEqual({ state: 'running' });
    await writeInGuest(tcg, '/f', 'TCG-OK');
    console.log(`TCG guest ran a typed command ${Date.now() - t0} ms after create() was called`);
    await p.destroy(tcg, log);
    await expect(fs.access(tcg.overlayPath)).rejects.toThrow();
  });

  it.skipIf(!kvmOpens)('starts with KVM when forced', async () => {
    const p = provider({ accel: 'kvm' });
    const t0 = Date.now();
    const kvm = await create(p, spec('desk-kvm', false));
    expect(kvm.accel).toBe('kvm');
    expect(p.describe(kvm).accel).toBe('KVM');
    const argv = (await fs.readFile(`/proc/${kvm.pid}/cmdline`, 'utf8')).split('\0');
    expect(argv).toContain('q35,accel=kvm');
    expect(argv[argv.indexOf('-cpu') + 1]).toMatch(/^host/);
    expect(await p.health(kvm)).toEqual({ state: 'running' });
    expect(await rfbBanner(kvm.vncPath)).toMatch(/^RFB /);
    if (kvmHardware) {
      // a stock kernel boots only over hardware virtualisation (not over kvm_pvm)
      await waitBooted(kvm, 0, t0);
      await writeInGuest(kvm, '/f', 'KVM-OK');
      console.log(`KVM guest ran a typed command ${Date.now() - t0} ms after create() was called`);
    }
    await p.destroy(kvm, log);
  });

  it('never changed the golden image', async () => {
    expect(await sha256File(template.image as string)).toBe(goldenSha);
    expect((await fs.stat(template.image as string)).mode).toBe(goldenMode);
  });
});
