// `npm run sim`: the real broker and store (PostgreSQL) with fake providers, at the scale of
// many hosts: USERS users arriving in a morning log-on storm (arrivals bunched around a peak,
// each user thinking a while between sign-in and Connect) on HOSTS hosts, one broker node per
// host sharing one database. Reports assignment latency p50/p99, how evenly desktops landed on
// the hosts, database queries per assignment, and where it breaks (the arrival rate at which
// p99 passes BREAK_MS or Connects fail). Options: --users=N --hosts=N --pools=N --storm-s=N
// --think-s=N --pg=URL (a server URL; database vdi_sim is made afresh there).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { Kysely, PostgresDialect, Migrator } from 'kysely';
import { Broker } from '../dist/broker/broker.js';
import { migrations } from '../dist/store/migrations.js';
import { pgClusterLock } from '../dist/store/cluster-lock.js';

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .map((a) => /^--([^=]+)=(.*)$/.exec(a))
    .filter(Boolean)
    .map((m) => [m[1], m[2]]),
);
const USERS = Number(args.users ?? 10_000);
const HOSTS = Number(args.hosts ?? 100);
const POOLS = Number(args.pools ?? 10);
const STORM_S = Number(args['storm-s'] ?? 60);
const THINK_S = Number(args['think-s'] ?? 5);
const BREAK_MS = Number(args['break-ms'] ?? 2000);
const PG_SERVER = args.pg ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DB_NAME = 'vdi_sim';

/** A provider that starts nothing: a desktop is a handle, ready after `startMs`. */
class FakeProvider {
  kind = 'xvnc';
  constructor(startMs) {
    this.startMs = startMs;
  }
  status = async () => ({ ok: true, detail: 'fake' });
  parseTemplate = (t) => t ?? {};
  create = async (spec) => {
    if (this.startMs) await new Promise((r) => setTimeout(r, this.startMs));
    return { desktopId: spec.desktopId };
  };
  endpoint = () => ({ kind: 'unix', path: '/nonexistent' });
  health = async () => ({ state: 'running' });
  destroy = async () => undefined;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function freshDatabase() {
  const c = new pg.Client({ connectionString: PG_SERVER });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${DB_NAME}`);
  await c.end();
  return PG_SERVER.replace(/\/[^/]*$/, `/${DB_NAME}`);
}

export async function main() {
  const url = await freshDatabase();
  pg.types.setTypeParser(20, (v) => Number(v));
  let queries = 0;
  const quiet = (pool) => pool.on('error', () => undefined); // connections ended by the DROP
  const db = new Kysely({
    dialect: new PostgresDialect({ pool: quiet(new pg.Pool({ connectionString: url, max: 20 })) }),
    log: (e) => {
      if (e.level === 'query') queries++;
    },
  });
  const { error } = await new Migrator({ db, provider: migrations('postgres') }).migrateToLatest();
  if (error) throw error;
  const rawLock = pgClusterLock(quiet(new pg.Pool({ connectionString: url, max: 20 })));
  let locks = 0;
  const lock = {
    run: (key, fn) => {
      locks++; // one pg_advisory_lock and one unlock each
      return rawLock.run(key, fn);
    },
    close: () => rawLock.close(),
  };

  // the directory: pools, one group entitled to all, users in it
  const now = new Date().toISOString();
  const pools = [];
  for (let i = 0; i < POOLS; i++) {
    const id = randomUUID();
    pools.push(id);
    await db
      .insertInto('pools')
      .values({
        id,
        name: `pool-${i}`,
        description: '',
        provider: 'xvnc',
        assignment: 'floating',
        template: '{}',
        min_size: 0,
        max_size: USERS,
        spares: 0,
        disconnected_timeout_sec: 3600,
        idle_timeout_sec: 0,
        max_session_sec: 0,
        max_per_user: 1,
        draining: 0,
        created_at: now,
      })
      .execute();
  }
  const group = randomUUID();
  await db.insertInto('groups').values({ id: group, name: 'staff', created_at: now }).execute();
  for (const p of pools)
    await db
      .insertInto('entitlements')
      .values({
        id: randomUUID(),
        pool_id: p,
        principal_type: 'group',
        principal_id: group,
        created_at: now,
      })
      .execute();
  const users = [];
  for (let i = 0; i < USERS; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(USERS, i + 1000); j++) {
      const id = randomUUID();
      users.push({ id, name: `user${j}` });
      batch.push({
        id,
        username: `user${j}`,
        display_name: '',
        password_hash: 'x',
        role: 'user',
        disabled: 0,
        created_at: now,
      });
    }
    await db.insertInto('users').values(batch).execute();
    await db
      .insertInto('group_members')
      .values(batch.map((u) => ({ group_id: group, user_id: u.id })))
      .execute();
  }

  // one broker node per host, sharing the database (each places on its own host)
  const log = pino({ level: 'silent' });
  const provider = new FakeProvider(Number(args['start-ms'] ?? 0));
  const brokers = [];
  for (let h = 0; h < HOSTS; h++)
    brokers.push(
      new Broker(db, new Map([['xvnc', provider]]), { now: () => Date.now() }, log, {
        tickMs: 3_600_000,
        node: { host: `host-${h}`, id: `node-${h}`, leaseMs: 30_000, clustered: true },
        lock,
      }),
    );

  // the storm: arrivals normally distributed around the middle of STORM_S (σ = STORM_S/6),
  // then a think time (uniform 0..THINK_S) before Connect; a user picks one pool
  const gauss = () => {
    let u = 0;
    let v = 0;
    while (u === 0) u = Math.random();
    while (v === 0) v = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const plan = users
    .map((u, i) => ({
      user: u,
      pool: pools[i % POOLS],
      at: Math.min(STORM_S, Math.max(0, STORM_S / 2 + (gauss() * STORM_S) / 6)) * 1000,
      think: Math.random() * THINK_S * 1000,
    }))
    .sort((a, b) => a.at + a.think - (b.at + b.think));

  const results = [];
  const q0 = queries;
  const l0 = locks;
  const t0 = Date.now();
  let inFlight = 0;
  let maxInFlight = 0;
  await Promise.all(
    plan.map(async (p, i) => {
      const due = t0 + p.at + p.think;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const broker = brokers[i % HOSTS]; // the load balancer spreads Connects over the nodes
      const start = Date.now();
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await broker.connect({ id: p.user.id, name: p.user.name }, p.pool);
        results.push({ sent: start - t0, ms: Date.now() - start, ok: true });
      } catch (e) {
        results.push({ sent: start - t0, ms: Date.now() - start, ok: false, code: e.code });
      } finally {
        inFlight--;
      }
    }),
  );
  const wall = Date.now() - t0;
  const ok = results.filter((r) => r.ok);
  const lat = ok.map((r) => r.ms).sort((a, b) => a - b);
  const perHost = await db
    .selectFrom('desktops')
    .select(['host', (eb) => eb.fn.countAll().as('n')])
    .groupBy('host')
    .execute();
  const counts = perHost.map((r) => Number(r.n));
  const mean = counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length);
  const sd = Math.sqrt(
    counts.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, counts.length),
  );

  // where it breaks: per second of the storm, the offered arrival rate against p99
  const bySecond = new Map();
  for (const r of results) {
    const s = Math.floor(r.sent / 1000);
    const b = bySecond.get(s) ?? { n: 0, fail: 0, ms: [] };
    b.n++;
    if (!r.ok) b.fail++;
    else b.ms.push(r.ms);
    bySecond.set(s, b);
  }
  let breaks;
  for (const [s, b] of [...bySecond].sort((x, y) => x[0] - y[0])) {
    b.ms.sort((x, y) => x - y);
    const p99 = percentile(b.ms, 99);
    if (b.fail > 0 || p99 > BREAK_MS) {
      breaks = { second: s, arrivalsPerSec: b.n, p99, failed: b.fail };
      break;
    }
  }
  const peak = Math.max(...[...bySecond.values()].map((b) => b.n));

  const report = {
    users: USERS,
    hosts: HOSTS,
    pools: POOLS,
    stormSeconds: STORM_S,
    peakArrivalsPerSec: peak,
    wallSeconds: +(wall / 1000).toFixed(1),
    assigned: ok.length,
    failed: results.length - ok.length,
    failures: Object.fromEntries(
      [...new Set(results.filter((r) => !r.ok).map((r) => r.code))].map((c) => [
        c,
        results.filter((r) => r.code === c).length,
      ]),
    ),
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat.at(-1) },
    maxConcurrentConnects: maxInFlight,
    placement: {
      hostsUsed: counts.length,
      perHostMin: Math.min(...counts),
      perHostMax: Math.max(...counts),
      perHostMean: +mean.toFixed(1),
      perHostStdDev: +sd.toFixed(2),
    },
    dbQueriesPerAssignment: +((queries - q0) / Math.max(1, results.length)).toFixed(1),
    advisoryLocksPerAssignment: +((locks - l0) / Math.max(1, results.length)).toFixed(2),
    breaks: breaks ?? `not within this run (p99 stayed under ${BREAK_MS} ms, no failures)`,
  };
  await lock.close();
  await db.destroy();
  const c = new pg.Client({ connectionString: PG_SERVER });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
  await c.end();
  return report;
}
