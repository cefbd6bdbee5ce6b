/**
 * Real LXD daemons for the tests: each test file starts its own `lxd` with a private data
 * directory (LXD_DIR), initialises it through the REST API (a `dir` storage pool, no network)
 * and imports the desktop image, which is built once per machine by infra/lxd/build-image.sh
 * and cached under /var/cache/vdi-lxd (keyed by the hash of its sources). For a cluster, extra
 * daemons listen on 127.0.0.2, 127.0.0.3 and join the first by token.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { LxdClient, type LxdConnection } from '../../src/providers/lxd/client.js';
import { ExecStream } from '../../src/providers/lxd/exec-stream.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../../..');
const BUILD_SCRIPT = path.join(repoRoot, 'infra/lxd/build-image.sh');
/** built into the image too (the postcopy helper) */
const IMAGE_SOURCES = [BUILD_SCRIPT, path.join(repoRoot, 'server/native/uffd-preload.c')];
const IMAGE_CACHE = '/var/cache/vdi-lxd';
export const IMAGE_ALIAS = 'vdi-desktop';

/** Why LXD cannot run here, or undefined when it can. */
export function lxdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'LXD tests need root (lxd runs its own daemon)';
  if (!fs.existsSync('/usr/bin/lxd')) return 'the lxd package is not installed (npm run setup)';
  if (!fs.existsSync('/usr/sbin/debootstrap')) return 'debootstrap is not installed';
  return undefined;
}

/** The cached desktop image tarball, built first if the script changed since. */
export async function desktopImage(): Promise<string> {
  const h = createHash('sha256');
  for (const f of IMAGE_SOURCES) h.update(fs.readFileSync(f));
  const hash = h.digest('hex').slice(0, 12);
  const tar = path.join(IMAGE_CACHE, `vdi-desktop-${hash}.tar`);
  if (fs.existsSync(tar)) return tar;
  fs.mkdirSync(IMAGE_CACHE, { recursive: true });
  const started = Date.now();
  await run('sh', [BUILD_SCRIPT, tar], { maxBuffer: 16 * 1024 * 1024 });
  process.stdout.write(`[lxd] desktop image built in ${(Date.now() - started) / 1000} s\n`);
  return tar;
}

export interface TestLxd {
  dir: string;
  socket: string;
  client: LxdClient;
  proc: ChildProcess;
  /** stop every instance and the daemon, unmount and remove its directory */
  stop(): Promise<void>;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts a daemon on a fresh data directory (optionally listening on an HTTPS address). */
export async function startLxd(dir: string, httpsAddress?: string): Promise<TestLxd> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const logFile = path.join(path.dirname(dir), `${path.basename(dir)}.log`);
  const proc = spawn('/usr/bin/lxd', ['--group', 'root', '--logfile', logFile], {
    env: { ...process.env, LXD_DIR: dir },
    stdio: 'ignore',
    detached: false,
  });
  let exited = false;
  proc.once('exit', () => (exited = true));
  const socket = path.join(dir, 'unix.socket');
  const client = new LxdClient({ kind: 'unix', socketPath: socket });
  await waitFor(
    async () => {
      if (exited) throw new Error(`lxd exited at start; see ${logFile}`);
      if (!fs.existsSync(socket)) return false;
      try {
        await client.get('/1.0');
        return true;
      } catch {
        return false;
      }
    },
    'lxd to answer',
    60_000,
  );
  if (httpsAddress !== undefined) {
    await client.run('PATCH', '/1.0', { config: { 'core.https_address': httpsAddress } });
  }
  const stop = async (): Promise<void> => {
    if (!exited) {
      // a test that failed half-way leaves instances: force them off first (a VM container
      // outlasted `lxd shutdown`'s clean stop and ran on after the daemon was killed)
      const left = await client
        .get<{ name: string; status: string }[]>('/1.0/instances?recursion=1')
        .catch(() => []);
      for (const i of left.filter((x) => x.status === 'Running'))
        await client
          .run('PUT', `/1.0/instances/${encodeURIComponent(i.name)}/state`, {
            action: 'stop',
            force: true,
            timeout: 10,
          })
          .catch(() => undefined);
      // `lxd shutdown` stops every instance, then the daemon
      await run('/usr/bin/lxd', ['shutdown', '--timeout', '60'], {
        env: { ...process.env, LXD_DIR: dir },
      }).catch(() => undefined);
      const gone = new Promise((r) => proc.once('exit', r));
      if (!exited) await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      if (!exited) proc.kill('SIGKILL');
    }
    // LXD mounts tmpfs for shmounts and devlxd under its directory
    const mounts = fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { dir, socket, client, proc, stop };
}

/** A `dir` storage pool named default, no network, and the desktop image as IMAGE_ALIAS. */
export async function initialise(client: LxdClient, imageTar: string): Promise<void> {
  await client.run('POST', '/1.0/storage-pools', { name: 'default', driver: 'dir' });
  await importImage(client, imageTar);
}

export async function importImage(client: LxdClient, imageTar: string): Promise<void> {
  const op = await client.run<{ metadata: { fingerprint: string } }>(
    'POST',
    '/1.0/images',
    fs.readFileSync(imageTar),
  );
  await client.run('POST', '/1.0/images/aliases', {
    name: IMAGE_ALIAS,
    target: op.metadata.fingerprint,
  });
}

/** Joins the daemon of `dir` to a cluster with a join token (`lxd init --preseed`). */
export async function joinByToken(
  dir: string,
  o: { serverName: string; serverAddress: string; token: string },
): Promise<void> {
  const preseed = [
    'cluster:',
    '  enabled: true',
    `  server_name: ${o.serverName}`,
    `  server_address: ${o.serverAddress}`,
    `  cluster_token: ${o.token}`,
    '  member_config:',
    '  - entity: storage-pool',
    '    name: default',
    '    key: source',
    '    value: ""',
    '',
  ].join('\n');
  await new Promise<void>((resolve, reject) => {
    const p = spawn('/usr/bin/lxd', ['init', '--preseed'], {
      env: { ...process.env, LXD_DIR: dir },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`lxd init --preseed: exit ${code}: ${err}`)),
    );
    p.stdin.end(preseed);
  });
}

/** Runs a command in a container (as the desktop's user by default); its stdout and exit. */
export async function execIn(
  client: LxdClient,
  instance: string,
  command: string[],
  opts: { root?: boolean; display?: boolean } = {},
): Promise<string> {
  const stream = new ExecStream(client, {
    instance,
    command,
    ...(opts.root === true ? {} : { user: 1000, group: 1000 }),
    environment: {
      HOME: opts.root === true ? '/root' : '/home/desk',
      PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
      ...(opts.display === true ? { DISPLAY: ':1' } : {}),
    },
  });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    stream.on('connect', () => stream.end());
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  return Buffer.concat(chunks).toString('utf8');
}

/** An HTTPS connection to a member, trusted by a client certificate the member knows. */
export function httpsConnection(
  url: string,
  cert: { cert: string; key: string },
  serverCert: string,
): LxdConnection {
  return { kind: 'https', url, ...cert, serverCert };
}

/** A fresh self-signed client certificate (openssl). */
export async function clientCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, 'client.key');
  const crt = path.join(dir, 'client.crt');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:secp384r1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    crt,
    '-days',
    '2',
    '-subj',
    '/CN=vdi-gateway-test',
  ]);
  return { cert: fs.readFileSync(crt, 'utf8'), key: fs.readFileSync(key, 'utf8') };
}

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

export interface TestCluster {
  m1: TestLxd;
  m2: TestLxd;
  /** the gateway's client certificate, which the cluster trusts (PEM, and its files) */
  cert: { cert: string; key: string; certFile: string; keyFile: string };
  /** the cluster's certificate (PEM, and its file) */
  clusterCert: string;
  clusterCertFile: string;
  /** HTTPS to the first member with the client certificate */
  client: LxdClient;
  url: string;
  stop(): Promise<void>;
}

/**
 * A two-member cluster: daemons under `base`/m1 and /m2 listening on the two addresses, the
 * second joined by token as `lxd init` does, the desktop image imported, and a client
 * certificate trusted for the gateway.
 */
export async function startCluster(
  base: string,
  addresses: [string, string],
  report: (line: string) => void = () => undefined,
): Promise<TestCluster> {
  const image = await desktopImage();
  fs.mkdirSync(base, { recursive: true });
  fs.chmodSync(base, 0o711);
  const m1 = await startLxd(path.join(base, 'm1'), addresses[0]);
  const m2 = await startLxd(path.join(base, 'm2'), addresses[1]);
  let t = Date.now();
  await m1.client.run('POST', '/1.0/storage-pools', { name: 'default', driver: 'dir' });
  await m1.client.run('PUT', '/1.0/cluster', { server_name: 'm1', enabled: true });
  report(`bootstrap in ${Date.now() - t} ms`);
  t = Date.now();
  // the token's operation runs until the token is used: take its facts, do not wait
  const { op } = await m1.client.start('POST', '/1.0/cluster/members', { server_name: 'm2' });
  // the join as `lxd init` does it: it checks the token's fingerprint, then has the
  // cluster trust the new member's certificate with the token's secret
  await joinByToken(m2.dir, {
    serverName: 'm2',
    serverAddress: addresses[1],
    token: joinToken(op.metadata ?? {}),
  });
  report(`join by token in ${Date.now() - t} ms`);
  await importImage(m1.client, image);
  const cert = await clientCertificate(base);
  await m1.client.run('POST', '/1.0/certificates', {
    type: 'client',
    name: 'vdi-gateway',
    certificate: cert.cert.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''),
  });
  const clusterCertFile = path.join(m1.dir, 'cluster.crt');
  const clusterCert = fs.readFileSync(clusterCertFile, 'utf8');
  const url = `https://${addresses[0]}`;
  return {
    m1,
    m2,
    cert: {
      ...cert,
      certFile: path.join(base, 'client.crt'),
      keyFile: path.join(base, 'client.key'),
    },
    clusterCert,
    clusterCertFile,
    client: new LxdClient(httpsConnection(url, cert, clusterCert)),
    url,
    stop: async () => {
      await m2.stop();
      await m1.stop();
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}
