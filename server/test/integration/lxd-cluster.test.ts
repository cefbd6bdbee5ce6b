/**
 * A real two-member LXD cluster on loopback addresses: two daemons with their own data
 * directories listening on 127.0.0.2:8443 and 127.0.0.3:8443, the second joined by token.
 * The gateway talks only to the first, over HTTPS with a client certificate the cluster
 * trusts. A desktop placed on the second member is reached through the first: an exec of a
 * byte relay inside the container over LXD's websocket API. A VM desktop (QEMU in a container)
 * moves live from one member to the other, its relays and QMP all through LXD's exec API.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LxdTemplate, PoolCreateBody } from '@vdi/shared';
import { Broker } from '../../src/broker/broker.js';
import { PoolAdmin } from '../../src/broker/pools.js';
import { ManualClock } from '../../src/clock.js';
import { openStore } from '../../src/store/db.js';
import type { DesktopHandle, Provider } from '../../src/providers/types.js';
import { DEFAULT_MIGRATION } from '../../src/providers/qemu/migrate.js';
import { RfbClient } from '../../src/rfb/client.js';
import { probeBanner } from '../../src/rfb/probe.js';
import { LxdClient } from '../../src/providers/lxd/client.js';
import { LxdProvider } from '../../src/providers/lxd/provider.js';
import { FramebufferModel } from '../unit/rfb/helpers/sinks.js';
import type { RfbEndpoint } from '../../src/rfb/endpoint.js';
import {
  buildGuest,
  CELL_H,
  keyEventsFor,
  litPixels,
  lxdVmTemplate,
  promptShown,
  type GuestTemplate,
} from '../helpers/guest.js';
import type { PpmImage } from '../helpers/qemu-console.js';
import { StreamManager } from '../../src/stream/stream-manager.js';
import {
  clientCertificate,
  execIn,
  lxdUnavailable,
  startCluster,
  type TestCluster,
  type TestLxd,
} from '../helpers/lxd.js';

const skip = lxdUnavailable();
if (skip !== undefined) process.stdout.write(`[lxd-cluster] skipped: ${skip}\n`);

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const base = '/var/tmp/vdi-lxd-cluster';
const M1 = '127.0.0.2:8443';
const M2 = '127.0.0.3:8443';

/** Users entitled to a pool, straight in the store. */
async function entitledUsers(
  store: Awaited<ReturnType<typeof openStore>>,
  clock: ManualClock,
  poolId: string,
  names: string[],
): Promise<{ id: string; name: string }[]> {
  const now = new Date(clock.now()).toISOString();
  const users: { id: string; name: string }[] = [];
  for (const name of names) {
    const id = randomUUID();
    await store.db
      .insertInto('users')
      .values({
        id,
        username: name,
        display_name: '',
        password_hash: 'x',
        role: 'user',
        disabled: 0,
        created_at: now,
      })
      .execute();
    await store.db
      .insertInto('entitlements')
      .values({
        id: randomUUID(),
        pool_id: poolId,
        principal_type: 'user',
        principal_id: id,
        created_at: now,
      })
      .execute();
    users.push({ id, name });
  }
  return users;
}

describe.skipIf(skip !== undefined)('lxd provider on a two-member LXD cluster', () => {
  let m1: TestLxd;
  let m2: TestLxd;
  let provider: LxdProvider;
  let remote: LxdClient;

  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster(base, [M1, M2], (line) =>
      process.stdout.write(`[lxd-cluster] ${line}\n`),
    );
    ({ m1, m2, client: remote } = cluster);
    provider = new LxdProvider({
      client: remote,
      runDir: path.join(base, 'run'),
      localMember: 'm1',
      nodeName: 'cluster-test',
    });
  }, 900_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 180_000);

  /** A broker on a fresh store with the cluster's provider, and one pool of it. */
  async function brokerWithPool(name: string, maxSize: number, template: Record<string, unknown>) {
    const store = await openStore({ dataDir: fs.mkdtempSync(path.join(base, 'store-')) });
    const clock = new ManualClock();
    const broker = new Broker(
      store.db,
      new Map<string, Provider>([['lxd', provider]]),
      clock,
      log,
      {
        tickMs: 60_000,
      },
    );
    const admin = { id: null, name: 'test-admin' };
    try {
      const pool = await new PoolAdmin(store.db, broker, clock, log).create(
        PoolCreateBody.parse({ name, provider: 'lxd', maxSize, template }),
        admin,
      );
      return { store, clock, broker, admin, pool };
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  it('lists both members online, through HTTPS with the client certificate', async () => {
    const hosts = await provider.hosts();
    expect(hosts?.map((h) => [h.name, h.online])).toEqual([
      ['m1', true],
      ['m2', true],
    ]);
  });

  it('refuses a client whose certificate the cluster does not trust', async () => {
    const strangerDir = path.join(base, 'stranger');
    fs.mkdirSync(strangerDir, { recursive: true });
    const stranger = await clientCertificate(strangerDir);
    const c = new LxdClient({
      kind: 'https',
      url: `https://${M1}`,
      ...stranger,
      serverCert: fs.readFileSync(path.join(m1.dir, 'cluster.crt'), 'utf8'),
    });
    const me = await c.get<{ auth: string }>('/1.0');
    expect(me.auth).toBe('untrusted');
    await expect(c.get('/1.0/instances')).rejects.toThrow();
  });

  it('places a desktop on the second member and reaches it through the first', async () => {
    const t0 = Date.now();
    const handle = await provider.create(
      {
        desktopId: randomUUID(),
        poolId: 'p',
        template: LxdTemplate.parse({ width: 1024, height: 768 }),
        persistent: false,
        host: 'm2',
      },
      log,
    );
    process.stdout.write(`[lxd-cluster] desktop on m2 ready in ${Date.now() - t0} ms\n`);
    expect(handle.member).toBe('m2');
    const ep = provider.endpoint(handle);
    expect(ep.kind).toBe('stream');
    // the container really runs on m2: its state as m2's own daemon reports it
    const st = await m2.client.get<{ status: string }>(`/1.0/instances/${String(handle.name)}`);
    expect(st.status).toBe('Running');

    const t1 = Date.now();
    expect((await probeBanner(ep, 10_000)).ok).toBe(true);
    process.stdout.write(`[lxd-cluster] RFB banner via m1 in ${Date.now() - t1} ms\n`);

    const fb = new FramebufferModel();
    const client = new RfbClient({ endpoint: ep, sink: fb, connectTimeoutMs: 30_000 });
    client.on('error', () => undefined);
    const t2 = Date.now();
    const info = await client.connect();
    const firstMs = Date.now() - t2;
    expect(info.width).toBe(1024);
    expect(info.height).toBe(768);
    // a few full screens through the relay: 3 MiB of pixels each, compressed on the wire (the
    // relay is a remote link: the client asks for Tight/ZRLE)
    const before = fb.updates;
    const bytesBefore = client.bytesReceived;
    const t3 = Date.now();
    for (let i = 0; i < 5; i++) {
      const want = fb.updates + 1;
      client.requestFullUpdate();
      const deadline = Date.now() + 30_000;
      while (fb.updates < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    }
    const ms = Date.now() - t3;
    expect(fb.updates).toBeGreaterThanOrEqual(before + 5);
    const mib = (5 * 1024 * 768 * 4) / (1024 * 1024);
    const wire = client.bytesReceived - bytesBefore;
    process.stdout.write(
      `[lxd-cluster] first frame in ${firstMs} ms (${info.width}x${info.height}); 5 full screens ` +
        `(${mib} MiB of pixels, ${wire} bytes on the wire) in ${ms} ms ` +
        `(${(mib / (ms / 1000)).toFixed(0)} MiB/s of pixels)\n`,
    );
    client.close('test over');

    await provider.destroy(handle, log);
    await expect(m1.client.get(`/1.0/instances/${String(handle.name)}`)).rejects.toMatchObject({
      code: 'LXD_NOT_FOUND',
    });
  }, 600_000);

  it('the broker places Connects across the members, honours a drain and a maximum, and cleans up', async () => {
    const { store, clock, broker, admin, pool } = await brokerWithPool('cluster', 4, {
      width: 640,
      height: 480,
      placement: 'breadth-first',
    });
    try {
      await broker.tick();
      const users = await entitledUsers(store, clock, pool.id, ['a', 'b', 'c']);
      const memberOf = async (desktopId: string) => {
        const row = await store.db
          .selectFrom('desktops')
          .select(['handle', 'member'])
          .where('id', '=', desktopId)
          .executeTakeFirstOrThrow();
        const name = (JSON.parse(row.handle ?? '{}') as { name?: string }).name;
        // where LXD itself says the container runs
        const inst = await m1.client.get<{ location: string }>(`/1.0/instances/${String(name)}`);
        expect(inst.location).toBe(row.member);
        return inst.location;
      };
      // breadth-first: the first two desktops go to different members
      const first = await broker.connect(users[0]!, pool.id);
      const second = await broker.connect(users[1]!, pool.id);
      expect(new Set([await memberOf(first.desktopId), await memberOf(second.desktopId)])).toEqual(
        new Set(['m1', 'm2']),
      );
      expect((await broker.hosts()).map((h) => [h.id, h.sessions])).toEqual([
        ['m1', 1],
        ['m2', 1],
      ]);
      // m1 drained, m2 at its maximum: no room anywhere; m2's maximum raised: the third goes there
      await broker.updateHost('m1', { state: 'draining' }, admin);
      await broker.updateHost('m2', { maxSessions: 1 }, admin);
      await expect(broker.connect(users[2]!, pool.id)).rejects.toMatchObject({
        code: 'NO_HOST_CAPACITY',
      });
      await broker.updateHost('m2', { maxSessions: 2 }, admin);
      const third = await broker.connect(users[2]!, pool.id);
      expect(await memberOf(third.desktopId)).toBe('m2');
      // log off: floating desktops are deleted from whichever member ran them
      for (const [i, s] of [first, second, third].entries())
        await broker.logoff(s.sessionId, users[i]!, 'logged off by test');
      await broker.tick();
      const left = await m1.client.get<string[]>('/1.0/instances');
      expect(left.filter((u) => u.includes('/vdi-'))).toEqual([]);
      expect((await broker.hosts()).map((h) => h.sessions)).toEqual([0, 0]);
    } finally {
      await store.close();
    }
  }, 600_000);

  describe('a VM desktop (QEMU in a container) moves live between the members', () => {
    let guest: GuestTemplate;
    const vmTemplate = () => LxdTemplate.parse(lxdVmTemplate(guest));
    beforeAll(async () => {
      guest = await buildGuest();
    }, 300_000);

    /** A viewer of the VM's display: its screen as RGB, and keys typed into it. */
    async function view(ep: RfbEndpoint) {
      const fb = new FramebufferModel();
      const client = new RfbClient({ endpoint: ep, sink: fb, connectTimeoutMs: 30_000 });
      client.on('error', () => undefined);
      await client.connect();
      const image = (): PpmImage => {
        const rgb = Buffer.alloc(fb.width * fb.height * 3);
        for (let i = 0, j = 0; i < fb.width * fb.height * 4; i += 4, j += 3) {
          rgb[j] = fb.data[i]!;
          rgb[j + 1] = fb.data[i + 1]!;
          rgb[j + 2] = fb.data[i + 2]!;
        }
        return { width: fb.width, height: fb.height, rgb };
      };
      const type = (text: string) => {
        for (const k of keyEventsFor(text)) client.keyEvent(k.keysym, k.down);
      };
      return { client, image, type };
    }
    type View = Awaited<ReturnType<typeof view>>;

    async function until<T>(what: string, ms: number, f: () => T | undefined): Promise<T> {
      const deadline = Date.now() + ms;
      for (;;) {
        const v = f();
        if (v !== undefined) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    /** One text row's pixels (80 cells). */
    const row = (img: PpmImage, r: number) =>
      img.rgb.subarray(r * CELL_H * img.width * 3, (r + 1) * CELL_H * img.width * 3);
    /** `clear; …` leaves its output on the top rows and the prompt under them. */
    const outputShown = (img: PpmImage, rows: number) =>
      img.width === 720 &&
      litPixels(img, 0, rows, 12, 1) > 100 &&
      litPixels(img, 14, rows, 80 - 14, 1) === 0 &&
      Array.from({ length: rows }, (_, r) => litPixels(img, 0, r, 80, 1) > 0).every(Boolean);

    /** Types a line until its output is on screen (keys typed before the shell reads are lost). */
    async function runLine(v: View, line: string, rows: number): Promise<PpmImage> {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        v.type('\n');
        await new Promise((r) => setTimeout(r, 300));
        v.type(`${line}\n`);
        const shown = await until(line, 10_000, () =>
          outputShown(v.image(), rows) ? v.image() : undefined,
        ).catch(() => undefined);
        if (shown) return shown;
      }
      throw new Error(`the guest did not run: ${line}`);
    }

    it('moves to the other member with its memory and disk, the source container gone', async () => {
      const desktopId = randomUUID();
      const t0 = Date.now();
      const handle = await provider.create(
        { desktopId, poolId: 'p', template: vmTemplate(), persistent: false, host: 'm1' },
        log,
      );
      expect(handle.member).toBe('m1');
      const before = await view(provider.endpoint(handle));
      await until('the guest shell', 180_000, () =>
        promptShown(before.image()) ? true : undefined,
      );
      process.stdout.write(`[lxd-cluster] VM on m1 at its prompt in ${Date.now() - t0} ms\n`);
      // a shell variable lives only in the guest's memory, the file on its disk (synced)
      const shown = await runLine(
        before,
        'V=kept-in-ram; clear; echo moved-ok > /data/m; sync; cat /data/m; echo $V',
        2,
      );
      const fileRow = Buffer.from(row(shown, 0));
      const varRow = Buffer.from(row(shown, 1));
      expect(fileRow.equals(varRow)).toBe(false);

      const t1 = Date.now();
      let destinationSeen: RfbEndpoint | undefined;
      let destinationHandle: unknown;
      const outcome = await provider.migrate(
        handle,
        { destinationHost: 'm2', template: vmTemplate() },
        log,
        {
          destinationReady: (d) => {
            destinationSeen = d.endpoint;
            destinationHandle = d.handle;
            return Promise.resolve();
          },
        },
      );
      process.stdout.write(
        `[lxd-cluster] VM moved m1 -> m2 in ${Date.now() - t1} ms: ${JSON.stringify(outcome.stats)}\n`,
      );
      before.client.close('moved');
      expect(outcome.handle.member).toBe('m2');
      expect(outcome.handle.name).not.toBe(handle.name);
      expect(destinationSeen?.kind).toBe('stream');
      // the handle told at destinationReady is the one the desktop ends with
      expect(destinationHandle).toEqual(outcome.handle);
      // the source container is gone; the destination runs on m2, as m2 itself says
      await expect(m1.client.get(`/1.0/instances/${String(handle.name)}`)).rejects.toMatchObject({
        code: 'LXD_NOT_FOUND',
      });
      const inst = await m2.client.get<{
        status: string;
        location: string;
        config: Record<string, string>;
      }>(`/1.0/instances/${String(outcome.handle.name)}`);
      expect(inst.status).toBe('Running');
      expect(inst.location).toBe('m2');
      // a restart would not wait for a move again
      expect(inst.config['environment.VDI_INCOMING']).toBeUndefined();

      // the same shell: the variable is still set; the file is read from the disk, not the cache
      const after = await view(provider.endpoint(outcome.handle));
      const again = await runLine(
        after,
        'clear; echo 3 > /proc/sys/vm/drop_caches; cat /data/m; echo $V',
        2,
      );
      expect(Buffer.from(row(again, 0)).equals(fileRow)).toBe(true);
      expect(Buffer.from(row(again, 1)).equals(varRow)).toBe(true);
      after.client.close('test over');
      await provider.destroy(outcome.handle, log);
    }, 600_000);

    it('a move whose destination fails leaves the VM running on its member', async () => {
      const handle = await provider.create(
        {
          desktopId: randomUUID(),
          poolId: 'p',
          template: vmTemplate(),
          persistent: false,
          host: 'm2',
        },
        log,
      );
      let destination: string | undefined;
      try {
        await expect(
          provider.migrate(handle, { destinationHost: 'm1', template: vmTemplate() }, log, {
            destinationReady: async () => {
              const list = await m1.client.get<{ name: string }[]>('/1.0/instances?recursion=1');
              destination = list.find((i) => i.name !== handle.name)?.name;
              throw new Error('the viewer could not open the destination');
            },
          }),
        ).rejects.toThrow(/the viewer could not open the destination/);
        expect(destination).toBeDefined();
        // the destination container is removed, the source still runs the VM and serves RFB
        await expect(m1.client.get(`/1.0/instances/${String(destination)}`)).rejects.toMatchObject({
          code: 'LXD_NOT_FOUND',
        });
        expect(await provider.health(handle)).toEqual({ state: 'running' });
        expect((await probeBanner(provider.endpoint(handle), 10_000)).ok).toBe(true);
      } finally {
        await provider.destroy(handle, log);
      }
    }, 600_000);

    it('moves with postcopy: the destination runs before all memory has come', async () => {
      // the cluster's provider with MIGRATION_POSTCOPY on
      const pc = new LxdProvider({
        client: remote,
        runDir: path.join(base, 'run-pc'),
        localMember: 'm1',
        nodeName: 'cluster-test',
        migration: { ...DEFAULT_MIGRATION, postcopy: true },
      });
      const handle = await pc.create(
        {
          desktopId: randomUUID(),
          poolId: 'p',
          template: vmTemplate(),
          persistent: false,
          host: 'm1',
        },
        log,
      );
      let moved: DesktopHandle | undefined;
      try {
        const before = await view(pc.endpoint(handle));
        await until('the guest shell', 180_000, () =>
          promptShown(before.image()) ? true : undefined,
        );
        const shown = await runLine(before, 'V=pc-kept; clear; echo $V; echo $V', 2);
        const varRow = Buffer.from(row(shown, 0));
        before.client.close('moving');
        const outcome = await pc.migrate(
          handle,
          { destinationHost: 'm2', template: vmTemplate() },
          log,
          {},
        );
        moved = outcome.handle;
        process.stdout.write(
          `[lxd-cluster] VM moved m1 -> m2 with postcopy: ${JSON.stringify(outcome.stats)}\n`,
        );
        // the destination ran while it pulled the pages left
        expect(outcome.stats.postcopyMs).toBeGreaterThan(0);
        const inst = await m2.client.get<{
          config: Record<string, string>;
          devices: Record<string, unknown>;
        }>(`/1.0/instances/${String(moved.name)}`);
        // settled: a restart is an ordinary start, the userfaultfd device is gone
        expect(inst.config['environment.VDI_POSTCOPY']).toBeUndefined();
        expect(inst.devices.uffd).toBeUndefined();
        // QEMU runs as desk (uid 1000 in the container), not as the container's root
        const uid = (
          await execIn(remote, String(moved.name), ['sh', '-c', 'ps -o uid= -C qemu-system-x86_64'])
        ).trim();
        expect(uid).toBe('1000');
        const after = await view(pc.endpoint(moved));
        const again = await runLine(after, 'clear; echo $V; echo $V', 2);
        expect(Buffer.from(row(again, 0)).equals(varRow)).toBe(true);
        after.client.close('test over');
      } finally {
        await pc.destroy(moved ?? handle, log);
      }
    }, 600_000);

    it('the broker drains a member: both VM desktops on it move to the other, then one comes back', async () => {
      const { store, clock, broker, admin, pool } = await brokerWithPool('vms', 2, {
        ...vmTemplate(),
        placement: 'depth-first',
      });
      try {
        const users = await entitledUsers(store, clock, pool.id, ['vm-a', 'vm-b']);
        const where = async (desktopId: string) => {
          const r = await store.db
            .selectFrom('desktops')
            .select(['handle', 'member', 'state'])
            .where('id', '=', desktopId)
            .executeTakeFirstOrThrow();
          const name = (JSON.parse(r.handle ?? '{}') as { name?: string }).name;
          const inst = await m1.client.get<{ location: string; status: string }>(
            `/1.0/instances/${String(name)}`,
          );
          return { row: r.member, lxd: inst.location, status: inst.status, state: r.state };
        };
        // depth-first: both on one member
        const sessions = [
          await broker.connect(users[0]!, pool.id),
          await broker.connect(users[1]!, pool.id),
        ];
        const ids = sessions.map((s) => s.desktopId);
        const [from] = [(await where(ids[0]!)).lxd];
        expect((await where(ids[1]!)).lxd).toBe(from);
        const other = from === 'm1' ? 'm2' : 'm1';
        const handleOf = async (id: string) =>
          JSON.parse(
            (
              await store.db
                .selectFrom('desktops')
                .select('handle')
                .where('id', '=', id)
                .executeTakeFirstOrThrow()
            ).handle ?? '{}',
          ) as Record<string, unknown>;
        // the gateway's links to both desktops, as a viewer's would be: they must survive the move
        const lost: string[] = [];
        const links = new StreamManager(clock, log, {
          cursor: () => undefined,
          clipboard: () => undefined,
          lost: (id, reason) => lost.push(`${id}: ${reason}`),
        });
        broker.setDesktopLinks({ prepareMove: (id, d) => links.prepareMove(id, d.endpoint) });
        const streams = [];
        for (const id of ids) {
          const h = await handleOf(id);
          const v = await view(provider.endpoint(h));
          await until('the guest shell', 180_000, () =>
            promptShown(v.image()) ? true : undefined,
          );
          v.client.close('booted');
          streams.push(await links.acquire(id, provider.endpoint(h)));
        }

        // the console's Move dialog offers the members, and says where the desktop runs
        expect(await broker.moveTargetsFor(ids[0]!)).toEqual({
          hosts: ['m1', 'm2'],
          current: from,
        });
        const t = Date.now();
        const drained = await broker.drainHost(from, undefined, admin);
        process.stdout.write(
          `[lxd-cluster] drained ${from}: ${drained.moved} VM desktops to ${drained.to} in ${Date.now() - t} ms: ${JSON.stringify(drained.results)}\n`,
        );
        expect(drained).toMatchObject({ host: from, to: other, moved: 2, failed: 0 });
        for (const id of ids)
          expect(await where(id)).toEqual({
            row: other,
            lxd: other,
            status: 'Running',
            state: 'in-use',
          });
        // the same links, never lost, now carry input to the moved VMs: `clear` typed through
        // them leaves the prompt alone on the top row of the destination's screen
        expect(lost).toEqual([]);
        for (const [i, id] of ids.entries()) {
          expect(links.get(id)).toBe(streams[i]);
          const check = await view(provider.endpoint(await handleOf(id)));
          await until('the moved screen', 30_000, () =>
            promptShown(check.image()) ? true : undefined,
          );
          for (const k of keyEventsFor('clear\n'))
            expect(streams[i]!.input({ kind: 'key', keysym: k.keysym, down: k.down })).toBe(true);
          await until('clear typed through the moved link', 30_000, () =>
            outputShown(check.image(), 0) ? true : undefined,
          );
          check.client.close('checked');
        }
        links.closeAll();
        // and one back by itself, to the member it came from
        const back = await broker.moveDesktop(ids[0]!, from, admin);
        expect(back).toMatchObject({ desktopId: ids[0], from: other, to: from });
        expect(await where(ids[0]!)).toMatchObject({ row: from, lxd: from });
        // a move to a host that is no member is refused before anything starts
        await expect(broker.moveDesktop(ids[0]!, 'nowhere', admin)).rejects.toMatchObject({
          code: 'UNKNOWN_HOST',
        });
        const audit = await store.db
          .selectFrom('audit_log')
          .select(['action'])
          .where('action', 'like', '%move%')
          .execute();
        expect(audit.filter((a) => a.action === 'desktop.move')).toHaveLength(3);
        for (const [i, s] of sessions.entries())
          await broker.logoff(s.sessionId, users[i]!, 'logged off by test');
        await broker.tick();
        const left = await m1.client.get<string[]>('/1.0/instances');
        expect(left.filter((u) => u.includes('/vdi-'))).toEqual([]);
      } finally {
        await store.close();
      }
    }, 900_000);
  });
});
