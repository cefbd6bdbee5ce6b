// `npm run cluster`: on loopback, nginx (its own prefix and config in a temp dir, an
// unprivileged port) in front of N gateway nodes (default 2) sharing PostgreSQL and Redis, for
// trying the several-node mode. Needs a PostgreSQL and a Redis: CLUSTER_PG_URL (a server URL;
// database vdi_cluster is made afresh there on each run) and CLUSTER_REDIS_URL, defaulting to the local ones.
// CLUSTER_PORT (8090) is where nginx listens, CLUSTER_NODES (2) how many nodes. Ctrl-C stops all;
// desktops outlive the nodes like they outlive one server (log them off first to stop them).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  build,
  checkNode,
  CLUSTER_PACKAGES,
  ensureNodeModules,
  ensurePackages,
  root,
  RUNTIME_PACKAGES,
} from './setup.mjs';

checkNode();
ensurePackages([...RUNTIME_PACKAGES, ...CLUSTER_PACKAGES]);
ensureNodeModules();
build();

const { renderNginxConfig } = await import('../infra/nginx/render.mjs');
const { default: pg } = await import('pg');

const pgServer = process.env.CLUSTER_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.CLUSTER_REDIS_URL ?? 'redis://127.0.0.1:6379';
const port = Number(process.env.CLUSTER_PORT ?? 8090);
const count = Number(process.env.CLUSTER_NODES ?? 2);
const dbName = 'vdi_cluster';

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(a.port));
    });
    s.on('error', reject);
  });
}

async function ensureDatabase() {
  const c = new pg.Client({ connectionString: pgServer });
  try {
    await c.connect();
  } catch (e) {
    process.stderr.write(`PostgreSQL is not reachable at ${pgServer}: ${e.message}\n`);
    process.exit(1);
  }
  // a fresh one each run (for trying it out): the admin password printed below is the one
  await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${dbName}`);
  await c.end();
  return pgServer.replace(/\/[^/]*$/, `/${dbName}`);
}

const databaseUrl = await ensureDatabase();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-cluster-'));
// one data dir: the nodes run on one machine (one host), so any node reaches every desktop
const dataDir = path.join(dir, 'data');
const secretFile = path.join(dir, 'session-secret');
fs.writeFileSync(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
const adminPassword = process.env.VDI_ADMIN_PASSWORD ?? randomBytes(9).toString('base64url');
const children = [];

const nodes = [];
for (let i = 1; i <= count; i++) {
  const nodePort = await freePort();
  const child = spawn(process.execPath, [path.join(root, 'server', 'dist', 'main.js')], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      PORT: String(nodePort),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      SESSION_SECRET: fs.readFileSync(secretFile, 'utf8'),
      VDI_ADMIN_PASSWORD: adminPassword,
      NODE_ID: `node-${i}`,
      TRUST_PROXY: 'loopback',
    },
  });
  children.push(child);
  nodes.push(`127.0.0.1:${nodePort}`);
}

async function ready(node) {
  for (let t = 0; t < 300; t++) {
    const r = await fetch(`http://${node}/readyz`).catch(() => undefined);
    if (r?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node ${node} did not become ready`);
}
await Promise.all(nodes.map(ready));

const prefix = path.join(dir, 'nginx');
fs.mkdirSync(prefix, { recursive: true });
const conf = path.join(prefix, 'nginx.conf');
fs.writeFileSync(conf, renderNginxConfig({ prefix, listen: `127.0.0.1:${port}`, nodes }));
const test = spawnSync('nginx', ['-p', prefix, '-c', conf, '-t'], { encoding: 'utf8' });
if (test.status !== 0) {
  process.stderr.write(test.stderr);
  stop(1);
}
const nginx = spawn('nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], {
  stdio: ['ignore', 'inherit', 'inherit'],
});
children.push(nginx);

process.stdout.write(
  `\nVDI cluster: nginx on http://127.0.0.1:${port}/ in front of ${nodes.join(', ')}\n` +
    `  sign in as admin / ${adminPassword}\n` +
    `  database ${databaseUrl}, Redis ${redisUrl}, files in ${dir}\n` +
    `  try: kill -KILL <a node's pid> (${children
      .slice(0, count)
      .map((c) => c.pid)
      .join(', ')}) and watch the viewer move\n\n`,
);

function stop(code = 0) {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500).unref();
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop(0));
