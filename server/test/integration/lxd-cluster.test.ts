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
import { LxdTemplate } from '@vdi/shared';
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
});
