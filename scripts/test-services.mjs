// The PostgreSQL and Redis the several-node tests use (scale-out, cluster, node loss). When
// the local ones answer (127.0.0.1:5432 with trust auth for `postgres`, 127.0.0.1:6379) they
// are used; otherwise — a fresh machine, where Debian's cluster asks for a password — private
// throw-away instances are started on free loopback ports and TEST_PG_URL / TEST_REDIS_URL
// point the tests at them. `stopTestServices()` ends what was started. Plain Node.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const started = [];

function answers(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function must(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout || r.status}`);
  return r.stdout;
}

/** trust auth for `postgres` over TCP on the default port? */
function pgTrusts(port) {
  const r = spawnSync(
    'psql',
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-w', '-c', 'select 1'],
    {
      encoding: 'utf8',
      env: { ...process.env, PGCONNECT_TIMEOUT: '3' },
    },
  );
  return r.status === 0;
}

async function ensurePostgres(force) {
  if (process.env.TEST_PG_URL) return;
  if (!force && (await answers(5432)) && pgTrusts(5432)) return;
  const bin = fs
    .readdirSync('/usr/lib/postgresql')
    .map((v) => path.join('/usr/lib/postgresql', v, 'bin'))
    .find((d) => fs.existsSync(path.join(d, 'initdb')));
  if (!bin) throw new Error('PostgreSQL is not installed (package postgresql)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-test-pg-'));
  const port = await freePort();
  // initdb and the server refuse to run as root: as the package's postgres account
  const asPg = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asPg.length)
    fs.chownSync(
      dir,
      ...(() => {
        const id = must('id', ['-u', 'postgres']).trim();
        const gid = must('id', ['-g', 'postgres']).trim();
        return [Number(id), Number(gid)];
      })(),
    );
  const run = (cmd, args) =>
    must(asPg[0] ?? cmd, asPg.length ? [...asPg.slice(1), cmd, ...args] : args);
  run(path.join(bin, 'initdb'), [
    '-D',
    path.join(dir, 'data'),
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
  ]);
  run(path.join(bin, 'pg_ctl'), [
    '-D',
    path.join(dir, 'data'),
    '-l',
    path.join(dir, 'log'),
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
    '-w',
    'start',
  ]);
  started.push(() =>
    run(path.join(bin, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-m', 'fast', 'stop']),
  );
  process.env.TEST_PG_URL = `postgres://postgres@127.0.0.1:${port}/postgres`;
}

async function ensureRedis(force) {
  if (process.env.TEST_REDIS_URL) return;
  if (!force && (await answers(6379))) return;
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-test-redis-'));
  must('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--pidfile',
    path.join(dir, 'redis.pid'),
    '--daemonize',
    'yes',
  ]);
  started.push(() => {
    const pid = Number(fs.readFileSync(path.join(dir, 'redis.pid'), 'utf8'));
    if (pid > 0) process.kill(pid, 'SIGTERM');
  });
  process.env.TEST_REDIS_URL = `redis://127.0.0.1:${port}`;
}

/** `force`: start private ones even when the local ones answer (to try this path). */
export async function ensureTestServices(force = false) {
  await ensurePostgres(force);
  await ensureRedis(force);
}

export function stopTestServices() {
  for (const stop of started.splice(0).reverse()) {
    try {
      stop();
    } catch (e) {
      process.stderr.write(`[test] could not stop a test service: ${e.message}\n`);
    }
  }
}
