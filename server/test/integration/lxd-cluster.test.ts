/**
 * A real two-member LXD cluster on loopback addresses: two daemons with their own data
 * directories listening on 127.0.0.2:8443 and 127.0.0.3:8443, the second joined by token.
 * The gateway talks only to the first, over HTTPS with a client certificate the cluster
 * trusts. A desktop placed on the second member is reached through the first: an exec of a
 * byte relay inside the container over LXD's websocket API.
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
import type { Provider } from '../../src/providers/types.js';
import { RfbClient } from '../../src/rfb/client.js';
import { probeBanner } from '../../src/rfb/probe.js';
import { LxdClient } from '../../src/providers/lxd/client.js';
import { LxdProvider } from '../../src/providers/lxd/provider.js';
import { FramebufferModel } from '../unit/rfb/helpers/sinks.js';
import {
  clientCertificate,
  desktopImage,
  importImage,
  joinByToken,
  lxdUnavailable,
  startLxd,
  type TestLxd,
} from '../helpers/lxd.js';

const skip = lxdUnavailable();
if (skip !== undefined) process.stdout.write(`[lxd-cluster] skipped: ${skip}\n`);

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const base = '/var/tmp/vdi-lxd-cluster';
const M1 = '127.0.0.2:8443';
const M2 = '127.0.0.3:8443';

/** A join token as `lxc cluster add` prints it: base64 of the operation's join facts. */
function joinToken(meta: Record<string, unknown>): string {
  return Buffer.from(
    JSON.stringify({
      server_name: meta.serverName,
      fingerprint: meta.fingerprint,
      addresses: meta.addresses,
      secret: meta.secret,
      expires_at: meta.expiresAt,
    }),
  ).toString('base64');
}

describe.skipIf(skip !== undefined)('lxd provider on a two-member LXD cluster', () => {
  let m1: TestLxd;
  let m2: TestLxd;
  let provider: LxdProvider;
  let remote: LxdClient;

  beforeAll(async () => {
    const image = await desktopImage();
    fs.mkdirSync(base, { recursive: true });
    fs.chmodSync(base, 0o711);
    m1 = await startLxd(path.join(base, 'm1'), M1);
    m2 = await startLxd(path.join(base, 'm2'), M2);

    let t = Date.now();
    await m1.client.run('POST', '/1.0/storage-pools', { name: 'default', driver: 'dir' });
    await m1.client.run('PUT', '/1.0/cluster', { server_name: 'm1', enabled: true });
    process.stdout.write(`[lxd-cluster] bootstrap in ${Date.now() - t} ms\n`);
    t = Date.now();
    // the token's operation runs until the token is used: take its facts, do not wait
    const { op } = await m1.client.start('POST', '/1.0/cluster/members', { server_name: 'm2' });
    // the join as `lxd init` does it: it checks the token's fingerprint, then has the
    // cluster trust the new member's certificate with the token's secret
    await joinByToken(m2.dir, {
      serverName: 'm2',
      serverAddress: M2,
      token: joinToken(op.metadata ?? {}),
    });
    process.stdout.write(`[lxd-cluster] join by token in ${Date.now() - t} ms\n`);
    await importImage(m1.client, image);

    // the gateway: a client certificate the cluster trusts, HTTPS to the first member only
    const cert = await clientCertificate(base);
    await m1.client.run('POST', '/1.0/certificates', {
      type: 'client',
      name: 'vdi-gateway',
      certificate: cert.cert.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''),
    });
    const clusterCert = fs.readFileSync(path.join(m1.dir, 'cluster.crt'), 'utf8');
    remote = new LxdClient({
      kind: 'https',
      url: `https://${M1}`,
      ...cert,
      serverCert: clusterCert,
    });
    provider = new LxdProvider({
      client: remote,
      runDir: path.join(base, 'run'),
      localMember: 'm1',
      nodeName: 'cluster-test',
    });
  }, 900_000);

  afterAll(async () => {
    await m2?.stop();
    await m1?.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }, 180_000);

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
    const dataDir = fs.mkdtempSync(path.join(base, 'store-'));
    const store = await openStore({ dataDir });
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
        PoolCreateBody.parse({
          name: 'cluster',
          provider: 'lxd',
          maxSize: 4,
          template: { width: 640, height: 480, placement: 'breadth-first' },
        }),
        admin,
      );
      await broker.tick();
      const users: { id: string; name: string }[] = [];
      for (const name of ['a', 'b', 'c']) {
        const id = randomUUID();
        const now = new Date(clock.now()).toISOString();
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
            pool_id: pool.id,
            principal_type: 'user',
            principal_id: id,
            created_at: now,
          })
          .execute();
        users.push({ id, name });
      }
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
});
