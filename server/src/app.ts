import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import pino, { type Logger } from 'pino';
import { XvncTemplate } from '@vdi/shared';
import type { Config } from './config/index.js';
import { systemClock, type Clock } from './clock.js';
import { openStore, type Store } from './store/db.js';
import { createAuth } from './auth/index.js';
import { ensureAdmin } from './auth/users.js';
import { Broker } from './broker/broker.js';
import { SYSTEM } from './broker/actor.js';
import { PoolAdmin } from './broker/pools.js';
import { ApiRegistry } from './api/registry.js';
import { authRoutes } from './api/auth-routes.js';
import { errorHandler, sendError } from './api/http-error.js';
import { userRoutes } from './api/user-routes.js';
import { filesRoutes } from './api/files-routes.js';
import { adminRoutes } from './api/admin-routes.js';
import { Gateway, type GatewayOptions } from './gateway/gateway.js';
import { registry as metricsRegistry } from './gateway/metrics.js';
import type { Provider } from './providers/types.js';
import { XvncProvider } from './providers/xvnc/provider.js';
import { QemuProvider } from './providers/qemu/provider.js';
import { VncProvider } from './providers/vnc.js';
import { lxdProviderFromConfig } from './providers/lxd/from-config.js';

export interface ServerDeps {
  clock?: Clock;
  logger?: Logger;
  /** replace the provider set (tests) */
  providers?: Provider[];
  /** gateway timings (tests shorten reattach backoff, RFB link timeouts, viewer liveness) */
  gateway?: Partial<Omit<GatewayOptions, 'maxFramesInFlight' | 'allowedOrigins'>>;
}

export interface VdiServer {
  config: Config;
  http: http.Server;
  store: Store;
  broker: Broker;
  gateway: Gateway;
  log: Logger;
  /** bound port (after listen) */
  port(): number;
  listen(): Promise<number>;
  /**
   * Stop serving; desktops keep running (they outlive the process). At once: /readyz answers
   * 503, new viewers are refused and connected ones are told the server is restarting (they
   * reconnect by themselves). Then, after `drainMs` (time for a load balancer to see the 503
   * and for requests in flight to finish), everything closes.
   */
  close(opts?: { drainMs?: number }): Promise<void>;
}

/** The session-cookie secret: from config, else generated once and kept in the data dir. */
function sessionSecret(config: Config): string {
  if (config.sessionSecret) return config.sessionSecret;
  const file = path.join(config.dataDir, 'session-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const s = randomBytes(32).toString('hex');
    fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, s, { mode: 0o600 });
    return s;
  }
}

/** Build the whole server (tests start it in-process on port 0; main.ts adds signals). */
export async function createServer(config: Config, deps: ServerDeps = {}): Promise<VdiServer> {
  const clock = deps.clock ?? systemClock;
  const log = deps.logger ?? pino({ level: config.logLevel });
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    onPoolError: (err) => log.warn({ err }, 'a PostgreSQL connection was lost; it is replaced'),
  });
  const db = store.db;

  const dirs = { runDir: config.runDir, dataDir: config.dataDir };
  const providers = deps.providers ?? [
    new XvncProvider({
      ...dirs,
      isolation: config.desktopIsolation,
      uidRange: config.desktopUids,
      uidLockDir: config.desktopUids.lockDir,
      cgroupParent: config.cgroupParent,
    }),
    new QemuProvider(dirs, {
      accel: config.qemuAccel,
      hostName: config.hostName,
      migration: {
        maxBandwidthBytes: config.migration.maxBandwidthBytes,
        downtimeLimitMs: config.migration.downtimeLimitMs,
        postcopy: config.migration.postcopy,
      },
      uidRange: config.desktopUids,
      uidLockDir: config.desktopUids.lockDir,
      cgroupParent: config.cgroupParent,
    }),
    new VncProvider({ ownDirs: [config.runDir, config.dataDir] }),
    lxdProviderFromConfig(config),
  ];
  const providerMap = new Map<string, Provider>(providers.map((p) => [p.kind, p]));
  const broker = new Broker(db, providerMap, clock, log.child({ part: 'broker' }), {
    tickMs: config.brokerTickMs,
    migration: {
      hostName: config.hostName,
      hosts: config.hosts,
      drainConcurrency: config.migration.drainConcurrency,
    },
    // several nodes share a PostgreSQL store (decision 11)
    node: {
      host: config.node.host,
      id: config.node.id,
      leaseMs: config.node.leaseMs,
      clustered: store.dialect === 'postgres',
    },
    lock: store.lock,
    warnAheadMs: config.sessionWarningMs,
  });
  const pools = new PoolAdmin(db, broker, clock, log.child({ part: 'pools' }));

  // nodes starting together on a fresh database: one creates the first admin and pool
  await store.lock.run('vdi:first-run', async () => {
    await ensureAdmin(db, clock, log, {
      username: config.adminUser,
      password: config.adminPassword,
    });
    if (config.defaultPool) await ensureDefaultPool(db, clock, pools, config);
  });

  const app = express();
  app.disable('x-powered-by');
  app.set(
    'trust proxy',
    /^\d+$/.test(config.trustProxy) ? Number(config.trustProxy) : config.trustProxy,
  );
  const auth = createAuth(db, clock, {
    secret: sessionSecret(config),
    maxAgeMs: config.sessionMaxAgeMs,
    secure: config.cookieSecure,
    login: config.login,
  });
  const server = http.createServer(app);
  let ready = false;
  let draining = false;

  app.use((_req, res, next) => {
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'",
    );
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'same-origin');
    next();
  });

  app.get('/healthz', (_req, res) => res.json({ ok: true }));
  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, { ok: boolean; detail: string }> = {};
    try {
      await store.ping();
      checks.store = { ok: true, detail: store.dialect };
    } catch (e) {
      checks.store = { ok: false, detail: (e as Error).message };
    }
    for (const p of providers) checks[`provider:${p.kind}`] = await p.status();
    const ok = ready && !draining && checks.store.ok && (checks['provider:xvnc']?.ok ?? true);
    res.status(ok ? 200 : 503).json({ ok, draining, checks });
  });
  app.get('/metrics', async (_req, res) => {
    // gauges that are counts of what is in the store or attached here, read at scrape time
    try {
      await broker.updateGauges();
    } catch (err) {
      log.warn({ err }, 'metrics: could not count sessions and desktops');
    }
    gateway.updateGauges();
    res.setHeader('Content-Type', metricsRegistry.contentType);
    res.end(await metricsRegistry.metrics());
  });

  const api = express.Router();
  api.use(express.json({ limit: '256kb' }));
  api.use(auth.sessionMiddleware, auth.passportInit, auth.passportSession);
  // CSRF: state-changing calls must carry a header a cross-site form or image cannot send
  api.use((req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.get('x-requested-with') !== 'vdi') {
      return sendError(res, 403, 'CSRF', 'missing X-Requested-With: vdi header');
    }
    next();
  });
  const reg = new ApiRegistry();
  const gateway = new Gateway(
    server,
    broker,
    clock,
    log.child({ part: 'gateway' }),
    [auth.sessionMiddleware, auth.passportInit, auth.passportSession],
    {
      presenceSweepMs: config.node.presenceSweepMs,
      ...deps.gateway,
      maxFramesInFlight: config.maxFramesInFlight,
      video: config.video,
      allowedOrigins: config.allowedOrigins,
      desktopLimits: config.desktopLimits,
    },
  );
  authRoutes(api, reg, auth, broker.audit, log, (sid) => gateway.closeHttpSession(sid));
  userRoutes(api, reg, auth, broker);
  filesRoutes(api, reg, auth, broker);
  adminRoutes(api, reg, {
    db,
    clock,
    auth,
    broker,
    pools,
    live: {
      sessionStats: (id) => gateway.sessionStats(id),
      sendMessage: (id, text, from) => gateway.sendMessage(id, text, from),
      thumbnail: (desktopId, endpoint) => gateway.thumbnail(desktopId, endpoint),
    },
    onUserDisabled: async (userId) => {
      await auth.store.destroyForUser(userId);
      gateway.closeUser(userId);
    },
  });
  app.get('/api/openapi.json', (_req, res) => res.json(reg.openapi()));
  app.use(api);
  app.use('/api', (_req, res) => sendError(res, 404, 'NOT_FOUND', 'no such API route'));
  app.use(errorHandler(log));

  // the built client, with an SPA fallback for its routes
  if (fs.existsSync(path.join(config.clientDir, 'index.html'))) {
    app.use(express.static(config.clientDir, { index: false, maxAge: '1h' }));
    app.get(/^\/(?!api\/|socket\.io\/).*/, (_req, res) => {
      res.setHeader('Cache-Control', 'no-cache');
      res.sendFile(path.join(config.clientDir, 'index.html'));
    });
  } else {
    log.warn({ dir: config.clientDir }, 'client not built: only the API is served');
  }

  if (config.redisUrl) await attachRedisAdapter(gateway, config.redisUrl, log);

  await broker.reconcile();
  broker.start();
  const pruner = setInterval(() => void auth.store.prune().catch(() => undefined), 3600_000);
  pruner.unref();
  ready = true;

  const self: VdiServer = {
    config,
    http: server,
    store,
    broker,
    gateway,
    log,
    port: () => {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : config.port;
    },
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve(self.port());
        });
      }),
    close: async (opts = {}) => {
      draining = true;
      gateway.drain();
      const drainMs = opts.drainMs ?? 0;
      if (drainMs > 0) {
        log.info({ drainMs }, 'draining before shutdown');
        await new Promise((r) => setTimeout(r, drainMs));
      }
      await broker.stop();
      clearInterval(pruner);
      await gateway.close();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await store.close();
    },
  };
  return self;
}

async function ensureDefaultPool(
  db: Store['db'],
  clock: Clock,
  pools: PoolAdmin,
  config: Config,
): Promise<void> {
  const marker = await db
    .selectFrom('settings')
    .select('value')
    .where('key', '=', 'default-pool')
    .executeTakeFirst();
  if (marker) return;
  const pool = await pools.create(
    {
      name: 'Linux desktop',
      description: 'An X11 desktop (Openbox and a terminal)',
      provider: 'xvnc',
      assignment: 'floating',
      template: XvncTemplate.parse({
        width: config.defaultGeometry.width,
        height: config.defaultGeometry.height,
      }),
      minSize: 0,
      maxSize: 10,
      spares: 0,
      disconnectedTimeoutSec: config.defaultDisconnectedTimeoutSec,
      idleTimeoutSec: 0,
      maxSessionSec: 0,
      maxPerUser: 1,
    },
    SYSTEM,
  );
  // the default pool is for administrators; other users get pools through entitlements
  const admins = await db.selectFrom('users').select('id').where('role', '=', 'admin').execute();
  for (const a of admins) {
    await db
      .insertInto('entitlements')
      .values({
        id: randomUUID(),
        pool_id: pool.id,
        principal_type: 'user',
        principal_id: a.id,
        created_at: new Date(clock.now()).toISOString(),
      })
      .execute();
  }
  await db.insertInto('settings').values({ key: 'default-pool', value: pool.id }).execute();
}

async function attachRedisAdapter(gateway: Gateway, url: string, log: Logger): Promise<void> {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url });
  const sub = pub.duplicate();
  pub.on('error', (err: unknown) => log.error({ err }, 'redis error'));
  sub.on('error', (err: unknown) => log.error({ err }, 'redis error'));
  await Promise.all([pub.connect(), sub.connect()]);
  gateway.io.adapter(createAdapter(pub, sub));
  gateway.joinedCluster();
  log.info('Socket.IO Redis adapter enabled');
}
