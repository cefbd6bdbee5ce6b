/**
 * The lxd provider against a real LXD daemon that this file starts on its own data directory
 * and initialises (dir storage pool, no network, the desktop image from
 * infra/lxd/build-image.sh). Desktops are reached through the proxy device (same host) and
 * through the exec byte relay over LXD's websocket API (how other members are reached).
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LxdTemplate } from '@vdi/shared';
import { RfbClient } from '../../src/rfb/client.js';
import type { RfbEndpoint } from '../../src/rfb/endpoint.js';
import { probeBanner } from '../../src/rfb/probe.js';
import { LxdProvider } from '../../src/providers/lxd/provider.js';
import type { DesktopHandle } from '../../src/providers/types.js';
import { FramebufferModel } from '../unit/rfb/helpers/sinks.js';
import {
  desktopImage,
  execIn,
  initialise,
  lxdUnavailable,
  startLxd,
  type TestLxd,
} from '../helpers/lxd.js';

const skip = lxdUnavailable();
if (skip !== undefined) process.stdout.write(`[lxd-provider] skipped: ${skip}\n`);

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const base = '/var/tmp/vdi-lxd-test';
const WIDTH = 800;
const HEIGHT = 600;
const template = LxdTemplate.parse({
  width: WIDTH,
  height: HEIGHT,
  limits: { memoryMb: 768, cpuMax: 0.5, pids: 600 },
});

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Connects the real RFB client; resolves with its framebuffer once the first update is in. */
async function view(endpoint: RfbEndpoint) {
  const fb = new FramebufferModel();
  const client = new RfbClient({ endpoint, sink: fb, connectTimeoutMs: 30_000 });
  client.on('error', () => undefined);
  const info = await client.connect();
  return { client, fb, info };
}

function checksum(fb: FramebufferModel): string {
  let h = 0;
  for (let i = 0; i < fb.data.length; i += 4) h = (h * 31 + fb.data[i]! + fb.data[i + 1]!) | 0;
  return String(h);
}

describe.skipIf(skip !== undefined)('lxd provider on a real LXD daemon', () => {
  let lxd: TestLxd;
  let provider: LxdProvider;
  const runDir = path.join(base, 'run');

  beforeAll(async () => {
    const image = await desktopImage();
    // LXD's container root must traverse the path to its data directory
    fs.mkdirSync(base, { recursive: true });
    fs.chmodSync(base, 0o711);
    fs.mkdirSync(runDir, { mode: 0o700 });
    lxd = await startLxd(path.join(base, 'd1'));
    await initialise(lxd.client, image);
    provider = new LxdProvider({ client: lxd.client, runDir, nodeName: 'test-node' });
  }, 900_000);

  afterAll(async () => {
    await lxd?.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }, 120_000);

  it('reports itself ready and parses its template', async () => {
    expect((await provider.status()).ok).toBe(true);
    expect(() => provider.parseTemplate({ limits: { memoryMb: 8 } })).toThrow();
  });

  describe('a floating desktop', () => {
    let handle: DesktopHandle;
    let name: string;

    it('is a container with the pool limits, isolated ids and no network device', async () => {
      const started = Date.now();
      handle = await provider.create(
        { desktopId: randomUUID(), poolId: 'p1', template, persistent: false },
        log,
      );
      process.stdout.write(`[lxd] floating desktop ready in ${Date.now() - started} ms\n`);
      name = handle.name as string;
      const inst = await lxd.client.get<{
        config: Record<string, string>;
        devices: Record<string, Record<string, string>>;
        expanded_devices: Record<string, Record<string, string>>;
      }>(`/1.0/instances/${name}`);
      expect(inst.config['security.idmap.isolated']).toBe('true');
      expect(inst.config['limits.memory']).toBe('768MiB');
      expect(inst.config['limits.processes']).toBe('600');
      expect(inst.config['limits.cpu.allowance']).toBe('50ms/100ms');
      expect(inst.config['limits.cpu']).toBe('1');
      const types = Object.values(inst.expanded_devices).map((d) => d.type);
      expect(types).not.toContain('nic');
      expect(inst.devices.rfb?.type).toBe('proxy');
      // the proxy socket is private to the gateway's account
      const st = fs.statSync(provider.proxyPath(name));
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.uid).toBe(process.getuid?.());
      // the kernel holds the limit: the container's cgroup on the host (v1 or v2 layout)
      const cgroup = [
        `/sys/fs/cgroup/memory/lxc.payload.${name}/memory.limit_in_bytes`,
        `/sys/fs/cgroup/lxc.payload.${name}/memory.max`,
      ].find((f) => fs.existsSync(f));
      expect(cgroup).toBeDefined();
      expect(Number(fs.readFileSync(cgroup!, 'utf8').trim())).toBe(768 * 1024 * 1024);
      expect((await provider.health(handle)).state).toBe('running');
    });

    it('shows its screen through the proxy and takes typing from xdotool inside it', async () => {
      const v = await view(provider.endpoint(handle));
      try {
        expect(v.info.width).toBe(WIDTH);
        expect(v.info.height).toBe(HEIGHT);
        // the xterm needs a moment to map its window
        await waitFor(
          async () =>
            (
              await execIn(lxd.client, name, ['xdotool', 'search', '--class', 'xterm'], {
                display: true,
              }).catch(() => '')
            ).trim() !== '',
          'the xterm window',
        );
        const before = checksum(v.fb);
        const updatesBefore = v.fb.updates;
        const typeCommand = () =>
          execIn(
            lxd.client,
            name,
            [
              'sh',
              '-c',
              // focus without the window manager's help too (it may still be starting)
              'W=$(xdotool search --class xterm | tail -n 1); xdotool windowactivate "$W"; ' +
                'xdotool windowfocus --sync "$W"; ' +
                'xdotool type --delay 20 "touch /home/desk/typed"; xdotool key Return',
            ],
            { display: true },
          );
        // the shell in the xterm runs what is typed (a shell or window manager still starting
        // may miss the first keys: type again, up to three times)
        let ran = false;
        for (let attempt = 0; attempt < 3 && !ran; attempt++) {
          await typeCommand();
          ran = await waitFor(
            async () => (await execIn(lxd.client, name, ['ls', '/home/desk'])).includes('typed'),
            'the typed command to run',
            15_000,
          ).then(
            () => true,
            () => false,
          );
        }
        expect(ran).toBe(true);
        // and the viewer saw it: the typed line is on the screen it holds
        await waitFor(
          () => v.fb.updates > updatesBefore && checksum(v.fb) !== before,
          'the typed text on screen',
        );
      } finally {
        v.client.close('test over');
      }
    });

    it('is reached through the exec relay over the websocket API too', async () => {
      const ep = provider.relayEndpoint(handle);
      const t0 = Date.now();
      const banner = await probeBanner(ep, 10_000);
      const bannerMs = Date.now() - t0;
      expect(banner.ok).toBe(true);
      process.stdout.write(`[lxd] RFB banner through the exec relay in ${bannerMs} ms\n`);
      const v = await view(ep);
      try {
        expect(v.info.width).toBe(WIDTH);
        expect(v.fb.updates).toBeGreaterThan(0);
      } finally {
        v.client.close('test over');
      }
    });

    it('is deleted at log-off, with its proxy socket', async () => {
      await provider.destroy(handle, log, { keepDisk: false });
      await expect(lxd.client.get(`/1.0/instances/${name}`)).rejects.toMatchObject({
        code: 'LXD_NOT_FOUND',
      });
      expect(fs.existsSync(provider.proxyPath(name))).toBe(false);
      expect((await provider.health(handle)).state).toBe('dead');
    });
  });

  describe('a dedicated desktop', () => {
    const desktopId = randomUUID();
    let handle: DesktopHandle;
    let name: string;
    const spec = { desktopId, poolId: 'p2', template, persistent: true };

    it('keeps its disk across log-offs (stopped, then started again)', async () => {
      handle = await provider.create(spec, log);
      name = handle.name as string;
      await execIn(lxd.client, name, ['sh', '-c', 'echo kept > /home/desk/note']);
      await provider.destroy(handle, log, { keepDisk: true });
      const st = await lxd.client.get<{ status: string }>(`/1.0/instances/${name}/state`);
      expect(st.status).toBe('Stopped');
      expect(fs.existsSync(provider.proxyPath(name))).toBe(false);
      handle = await provider.create(spec, log);
      expect(handle.name).toBe(name);
      expect(await execIn(lxd.client, name, ['cat', '/home/desk/note'])).toBe('kept\n');
      // Xvnc came back on a fresh /tmp (a stale lock would have stopped it)
      expect((await probeBanner(provider.endpoint(handle), 10_000)).ok).toBe(true);
    });

    it('restores a snapshot through LXD', async () => {
      await provider.snapshot(handle, 'before');
      expect(await provider.listSnapshots(handle)).toEqual(['before']);
      await execIn(lxd.client, name, ['sh', '-c', 'echo changed > /home/desk/note']);
      await provider.restore(handle, 'before');
      expect(await execIn(lxd.client, name, ['cat', '/home/desk/note'])).toBe('kept\n');
      const v = await view(provider.endpoint(handle));
      v.client.close('test over');
      await provider.destroy(handle, log, { keepDisk: false });
      await expect(lxd.client.get(`/1.0/instances/${name}`)).rejects.toMatchObject({
        code: 'LXD_NOT_FOUND',
      });
    });
  });
});
