/**
 * Several gateway nodes on one PostgreSQL and Redis, with real Xvnc desktops and real viewers:
 * each fault issue 11 lists, tried (decision 11). Node B runs as its own process where a test
 * kills it; the others run in-process so a test can drive their ticks and sweeps.
 * Needs the local PostgreSQL (trust auth) and Redis this kind of machine runs.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XvncProvider } from '../../src/providers/xvnc/provider.js';
import type { DesktopHandle, DesktopHealth } from '../../src/providers/types.js';
import {
  ADMIN,
  Api,
  startServer,
  tempDirs,
  testConfig,
  until,
  type TestServer,
} from '../helpers/server.js';
import { freePort, ServerProcess } from '../helpers/process-server.js';
import { receiveFrames, Viewers } from '../helpers/viewer.js';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('several gateway nodes (decision 11)', () => {
  const dbName = `vdi_cluster_${randomBytes(4).toString('hex')}`;
  const url = PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`);
  const dirs = tempDirs('vdi-cl');
  const env = {
    DATABASE_URL: url,
    REDIS_URL: REDIS,
    DEFAULT_GEOMETRY: '640x480',
    SESSION_SECRET: randomBytes(24).toString('hex'),
    HOST_NAME: 'host-1',
    PRESENCE_SWEEP_MS: '200',
    NODE_LEASE_MS: '3000',
  };
  let a: TestServer;
  let b: TestServer;
  let db: pg.Client;
  const viewers = new Viewers();
  let poolId: string;

  const session = async (id: string) =>
    (await db.query<{ state: string }>('SELECT state FROM sessions WHERE id = $1', [id])).rows[0];

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    a = await startServer(testConfig({ ...env, NODE_ID: 'node-a' }, dirs));
    b = await startServer(testConfig({ ...env, NODE_ID: 'node-b' }, dirs));
    db = new pg.Client({ connectionString: url });
    await db.connect();
    const api = await new Api(a.url).login(ADMIN.username, ADMIN.password);
    poolId = ((await api.get('/api/desktops')).body as { poolId: string }[])[0]!.poolId;
  });

  afterAll(async () => {
    viewers.closeAll();
    // leave no desktop running
    const api = await new Api(a.url).login(ADMIN.username, ADMIN.password).catch(() => undefined);
    const live = await db.query<{ id: string }>("SELECT id FROM sessions WHERE state <> 'ended'");
    for (const s of live.rows) await api?.post(`/api/sessions/${s.id}/logoff`);
    await a?.close();
    await b?.close();
    await db?.end();
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    for (const d of [dirs.dataDir, dirs.runDir]) fs.rmSync(d, { recursive: true, force: true });
  });

  async function signIn(node: { url: string }): Promise<Api> {
    return new Api(node.url).login(ADMIN.username, ADMIN.password);
  }

  it('registers its host, and records the owner host of each desktop it starts', async () => {
    const hosts = await db.query<{ id: string; state: string }>('SELECT id, state FROM hosts');
    expect(hosts.rows).toEqual([{ id: 'host-1', state: 'active' }]);
    const api = await signIn(a);
    const s = (await api.post(`/api/pools/${poolId}/connect`)).body as {
      sessionId: string;
      desktopId: string;
    };
    const d = await db.query('SELECT host, lease_node, lease_until FROM desktops WHERE id = $1', [
      s.desktopId,
    ]);
    // handed out: its start's lease has ended
    expect(d.rows[0]).toEqual({ host: 'host-1', lease_node: null, lease_until: null });
    expect((await api.post(`/api/sessions/${s.sessionId}/logoff`)).status).toBe(204);
  });

  it('the same user connecting through A and B at once gets one session (10 tries)', async () => {
    const viaA = await signIn(a);
    const viaB = await signIn(b);
    for (let i = 0; i < 10; i++) {
      const [x, y] = await Promise.all([
        viaA.post(`/api/pools/${poolId}/connect`),
        viaB.post(`/api/pools/${poolId}/connect`),
      ]);
      expect([x.status, y.status]).toEqual([200, 200]);
      const bx = x.body as { sessionId: string };
      const by = y.body as { sessionId: string };
      expect(bx.sessionId).toBe(by.sessionId);
      const live = await db.query("SELECT id FROM sessions WHERE state <> 'ended'");
      expect(live.rows).toHaveLength(1);
      expect((await viaA.post(`/api/sessions/${bx.sessionId}/logoff`)).status).toBe(204);
    }
  }, 120_000);

  it('a tab closing on A does not disconnect a user still viewing through B; the last one does', async () => {
    const api = await signIn(a);
    const { sessionId } = (await api.post(`/api/pools/${poolId}/connect`)).body as {
      sessionId: string;
    };
    const onA = await viewers.attached(a.url, api.cookie, sessionId);
    const onB = await viewers.attached(b.url, api.cookie, sessionId);
    expect((await session(sessionId))?.state).toBe('active');
    onA.socket.close();
    await until(() => a.server.gateway.io.of('/').sockets.size === 0, 10_000, 'A lets go');
    // A's own check (it asks B) and two presence sweeps on each node
    for (let i = 0; i < 2; i++) {
      await a.server.gateway.sweepPresence();
      await b.server.gateway.sweepPresence();
    }
    expect((await session(sessionId))?.state).toBe('active');
    onB.socket.close();
    await until(
      async () => (await session(sessionId))?.state === 'disconnected',
      10_000,
      'disconnected once no node has a viewer',
    );
    expect((await api.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
  }, 60_000);

  it('an admin reset through A while the user views through B: B reattaches, nothing orphaned', async () => {
    const api = await signIn(a);
    const { sessionId, desktopId } = (await api.post(`/api/pools/${poolId}/connect`)).body as {
      sessionId: string;
      desktopId: string;
    };
    const onB = await viewers.attached(b.url, api.cookie, sessionId);
    const frames = receiveFrames(onB.socket);
    await until(() => frames.length > 0, 15_000, 'frames on B');
    const before = (await db.query('SELECT handle FROM desktops WHERE id = $1', [desktopId]))
      .rows[0] as { handle: string };
    expect((await api.post(`/api/admin/sessions/${sessionId}/reset`)).status).toBe(204);
    // B lost its link meanwhile and checked the desktop's health: the lease kept it from
    // judging the restarting desktop dead
    await b.server.broker.checkDesktopsSoon([desktopId]);
    const after = (await db.query('SELECT handle FROM desktops WHERE id = $1', [desktopId]))
      .rows[0] as { handle: string } | undefined;
    expect(after?.handle).toBeDefined();
    expect(after!.handle).not.toBe(before.handle);
    const n = frames.length;
    await until(() => frames.length > n, 20_000, 'B shows the restarted desktop');
    expect((await session(sessionId))?.state).toBe('active');
    onB.socket.close();
    expect((await api.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
  }, 60_000);

  it("a node that restarts leaves the other node's viewers' sessions active and its in-flight starts alone", async () => {
    const api = await signIn(b);
    const { sessionId } = (await api.post(`/api/pools/${poolId}/connect`)).body as {
      sessionId: string;
    };
    const onB = await viewers.attached(b.url, api.cookie, sessionId);
    // node B is starting a desktop right now (its lease is live)
    const until1 = new Date(Date.now() + 60_000).toISOString();
    await db.query(
      `INSERT INTO desktops (id, pool_id, name, state, created_at, state_since, host, lease_node, lease_until)
       VALUES ('in-flight-1', $1, 'x', 'provisioning', $2, $2, 'host-1', 'node-b', $3)`,
      [poolId, new Date().toISOString(), until1],
    );
    await a.close();
    a = await startServer(testConfig({ ...env, NODE_ID: 'node-a2' }, dirs));
    for (let i = 0; i < 3; i++) await a.server.gateway.sweepPresence();
    expect((await session(sessionId))?.state).toBe('active');
    expect((await db.query("SELECT state FROM desktops WHERE id = 'in-flight-1'")).rows[0]).toEqual(
      { state: 'provisioning' },
    );
    // node B "dies" mid-start: its lease runs out and A takes over and cleans up
    await db.query(
      "UPDATE desktops SET lease_until = '2000-01-01T00:00:00.000Z' WHERE id = 'in-flight-1'",
    );
    await a.server.broker.tick();
    expect((await db.query("SELECT id FROM desktops WHERE id = 'in-flight-1'")).rows).toEqual([]);
    onB.socket.close();
    expect((await api.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
  }, 60_000);

  it("a node on another host (another PID and mount namespace) does not judge this host's desktops", async () => {
    const api = await signIn(a);
    const { sessionId, desktopId } = (await api.post(`/api/pools/${poolId}/connect`)).body as {
      sessionId: string;
      desktopId: string;
    };
    // where it runs, no process of this host can be seen: every health check says dead
    const destroyed: string[] = [];
    const cDirs = tempDirs('vdi-cl2');
    const blind = new BlindXvnc(cDirs, destroyed);
    const c = await startServer(
      testConfig({ ...env, HOST_NAME: 'host-2', NODE_ID: 'node-c' }, cDirs),
      { providers: [blind], logger: pino({ level: 'silent' }) },
    );
    try {
      await c.server.broker.checkDesktopsSoon([desktopId]);
      await c.server.broker.tick();
      expect(destroyed).toEqual([]);
      expect((await session(sessionId))?.state).not.toBe('ended');
      const hosts = await db.query<{ id: string }>('SELECT id FROM hosts ORDER BY id');
      expect(hosts.rows.map((h) => h.id)).toEqual(['host-1', 'host-2']);
      // a log-off through the node on the other host: it cannot stop this host's processes,
      // so it hands the desktop to its host, whose tick stops it
      const viaC = await signIn(c);
      expect((await viaC.post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
      expect(destroyed).toEqual([]);
      const row = await db.query('SELECT state FROM desktops WHERE id = $1', [desktopId]);
      expect(row.rows).toEqual([{ state: 'stopping' }]);
      await a.server.broker.tick();
      expect((await db.query('SELECT id FROM desktops WHERE id = $1', [desktopId])).rows).toEqual(
        [],
      );
    } finally {
      await c.close();
      for (const d of [cDirs.dataDir, cDirs.runDir]) fs.rmSync(d, { recursive: true, force: true });
    }
  }, 60_000);

  it('a session whose only viewer was on a node that died goes disconnected', async () => {
    const port = await freePort();
    const node = new ServerProcess(port, {
      ...env,
      NODE_ID: 'node-d',
      DATA_DIR: dirs.dataDir,
      RUN_DIR: dirs.runDir,
      BROKER_TICK_MS: '60000',
    });
    await node.start();
    try {
      const api = await signIn(node);
      const { sessionId } = (await api.post(`/api/pools/${poolId}/connect`)).body as {
        sessionId: string;
      };
      await viewers.attached(node.url, api.cookie, sessionId);
      expect((await session(sessionId))?.state).toBe('active');
      await node.stop('SIGKILL');
      await until(
        async () => (await session(sessionId))?.state === 'disconnected',
        15_000,
        'presence expired with the node',
      );
      // the desktop was not lost
      expect((await session(sessionId))?.state).toBe('disconnected');
      expect((await (await signIn(a)).post(`/api/sessions/${sessionId}/logoff`)).status).toBe(204);
    } finally {
      await node.stop('SIGKILL');
    }
  }, 60_000);
});

/** The Xvnc provider as seen from a host that cannot see this host's processes. */
class BlindXvnc extends XvncProvider {
  constructor(
    dirs: { dataDir: string; runDir: string },
    private readonly destroyed: string[],
  ) {
    super({ ...dirs, isolation: 'account' });
  }
  override health(_handle: DesktopHandle): Promise<DesktopHealth> {
    return Promise.resolve({ state: 'dead', reason: 'no such process (another namespace)' });
  }
  override destroy(handle: DesktopHandle): Promise<void> {
    this.destroyed.push(String((handle as { desktopId?: string }).desktopId));
    return Promise.resolve();
  }
  // another host has its own run directory and cgroups: nothing of this host's to sweep
  override sweep(): Promise<number> {
    return Promise.resolve(0);
  }
}
