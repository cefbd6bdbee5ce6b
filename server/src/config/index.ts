import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * One zod-validated config object, read once at start-up from environment variables
 * (12-factor). Libraries take typed options from it, never process.env. The defaults run the
 * whole product on one machine.
 */

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'])
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

const EnvSchema = z.object({
  /** HTTP port @default 8080 */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** address to listen on @default 0.0.0.0 (any browser on the network) */
  HOST: z.string().default('0.0.0.0'),
  /** where the SQLite file, secrets and desktop data live @default ./data */
  DATA_DIR: z.string().default('./data'),
  /** PostgreSQL URL for the several-node mode; SQLite in DATA_DIR when unset */
  DATABASE_URL: z.string().url().optional(),
  /** Redis URL: enables the Socket.IO Redis adapter (several gateway nodes) */
  REDIS_URL: z.string().url().optional(),
  /** private directory (0700) for desktop unix sockets; short, because unix paths max at 107 bytes */
  RUN_DIR: z.string().optional(),
  /** signs the session cookie; generated and kept in DATA_DIR when unset */
  SESSION_SECRET: z.string().min(32).optional(),
  /** first admin account; a random password is printed once when unset */
  VDI_ADMIN_USER: z.string().min(1).max(64).default('admin'),
  VDI_ADMIN_PASSWORD: z.string().min(8).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Express 'trust proxy' setting: hop count or a list of addresses; decides req.ip for rate limits */
  TRUST_PROXY: z.string().default('loopback'),
  /** extra allowed browser origins for the Socket.IO handshake (comma-separated); same-host is always allowed */
  ALLOWED_ORIGINS: z.string().default(''),
  /** Secure cookie flag: auto = only when the request came over HTTPS */
  COOKIE_SECURE: z.enum(['auto', 'true', 'false']).default('auto'),
  /** signed-in session lifetime in hours (absolute) @default 12 */
  SESSION_MAX_AGE_HOURS: z.coerce
    .number()
    .min(0.01)
    .max(24 * 30)
    .default(12),
  /** create the default Xvnc pool on first run @default true */
  DEFAULT_POOL: bool.default(true),
  /** size of the default pool's desktops @default 1280x800 */
  DEFAULT_GEOMETRY: z
    .string()
    .regex(/^\d{3,4}x\d{3,4}$/)
    .default('1280x800'),
  /** seconds a disconnected session in the default pool lives before log-off @default 3600 */
  DEFAULT_DISCONNECTED_TIMEOUT: z.coerce.number().int().min(0).default(3600),
  /**
   * how desktops are isolated when the server runs as root: sandbox = own account, namespaces
   * (bubblewrap) and cgroup; account = own account and cgroup, the host's namespaces. A server
   * that is not root cannot isolate desktops and runs them as itself. @default sandbox
   */
  DESKTOP_ISOLATION: z.enum(['sandbox', 'account']).default('sandbox'),
  /** first uid of the desktop accounts (one per running desktop; no passwd entries needed) @default 400000 */
  DESKTOP_UID_BASE: z.coerce
    .number()
    .int()
    .min(1000)
    .max(2 ** 31 - 2)
    .default(400_000),
  /** how many desktop accounts the range holds: at most this many desktops run at once @default 1000 */
  DESKTOP_UID_COUNT: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  /** host-wide directory of desktop uid locks, shared by every server on the host @default /run/vdi-uids */
  DESKTOP_UID_LOCK_DIR: z.string().default('/run/vdi-uids'),
  /**
   * cgroup under which each desktop gets its own (limits, usage, kill-all); relative = below
   * the server's own cgroup, absolute = from the hierarchy's root @default vdi
   */
  CGROUP_PARENT: z
    .string()
    .regex(/^[A-Za-z0-9_./@:-]+$/)
    .default('vdi'),
  /** LXD's unix socket on this host, for the lxd provider @default /var/lib/lxd/unix.socket */
  LXD_SOCKET: z.string().default('/var/lib/lxd/unix.socket'),
  /** a remote LXD server or cluster member, https://ADDRESS:8443; the unix socket when unset */
  LXD_URL: z.string().url().optional(),
  /** PEM files of the client certificate and key LXD trusts, and of the cluster's certificate (pinned) */
  LXD_CLIENT_CERT: z.string().optional(),
  LXD_CLIENT_KEY: z.string().optional(),
  LXD_SERVER_CERT: z.string().optional(),
  /** the cluster member this node's host is (desktops there are reached through proxy sockets) */
  LXD_MEMBER: z.string().optional(),
  /** QEMU acceleration: auto = KVM when /dev/kvm is usable, else TCG */
  QEMU_ACCEL: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
  /** frames a viewer may have unacknowledged before its damage is coalesced @default 2 */
  MAX_FRAMES_IN_FLIGHT: z.coerce.number().int().min(1).max(16).default(2),
  /** send regions in motion as H.264 to browsers that decode it (issue 10) @default on */
  VIDEO_MODE: z.enum(['on', 'off']).default('on'),
  /** the ffmpeg (with libx264) a video region's encoder runs @default ffmpeg (on PATH) */
  VIDEO_FFMPEG: z.string().min(1).default('ffmpeg'),
  /** failed sign-ins for one account from one client IP per window before that IP is locked out of it @default 5 */
  LOGIN_MAX_PER_ACCOUNT: z.coerce.number().int().min(1).default(5),
  /** failed sign-ins for one account from all IPs per window before it is locked for everyone @default 50 */
  LOGIN_MAX_PER_ACCOUNT_TOTAL: z.coerce.number().int().min(1).default(50),
  /** sign-in attempts per client IP per window @default 30 */
  LOGIN_MAX_PER_IP: z.coerce.number().int().min(1).default(30),
  /** rate-limit window in seconds @default 300 */
  LOGIN_WINDOW_SEC: z.coerce.number().int().min(1).default(300),
  /** after SIGTERM: /readyz is 503 and viewers are told to reconnect, then this long before the process closes, ms @default 3000 */
  SHUTDOWN_DRAIN_MS: z.coerce.number().int().min(0).max(20_000).default(3000),
  /** how often the broker checks timeouts, spares and desktop health, ms @default 5000 */
  BROKER_TICK_MS: z.coerce.number().int().min(50).default(5000),
  /** this machine's name among the hosts desktops run on (hosts.id) @default os.hostname() */
  HOST_NAME: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/)
    .optional(),
  /** this gateway node's id among the nodes (leases name it) @default HOST_NAME-pid */
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/)
    .optional(),
  /** how long a node's lease on a desktop's in-flight work (starting, restarting) lasts without renewal, ms @default 30000 */
  NODE_LEASE_MS: z.coerce.number().int().min(500).max(600_000).default(30_000),
  /** how often a node looks for sessions marked active that no viewer on any node views, ms @default 5000 */
  PRESENCE_SWEEP_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
  /** how long before an idle or maximum-length log-off viewers see a countdown, seconds (at most half the time-out) @default 120 */
  SESSION_WARNING_SEC: z.coerce.number().int().min(0).max(3600).default(120),
  /** serve the built client from this folder @default ../client/dist */
  CLIENT_DIR: z.string().optional(),
  /** largest clipboard text between a desktop and its viewers, bytes (pools may set their own) @default 1048576 */
  CLIPBOARD_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024),
  /** largest desktop screen the gateway accepts, WIDTHxHEIGHT (pools may set their own) @default 8192x8192 */
  MAX_FRAMEBUFFER: z
    .string()
    .regex(/^\d{2,5}x\d{2,5}$/)
    .default('8192x8192'),
  /** largest desktop screen area, pixels (4 bytes each in the gateway) @default 16777216 (4096²) */
  MAX_FRAMEBUFFER_PIXELS: z.coerce
    .number()
    .int()
    .min(256)
    .max(16384 * 16384)
    .default(4096 * 4096),
  /** bytes of input (keys, pointer, clipboard) a viewer may send per second, burst the same @default 4194304 */
  INPUT_BYTES_PER_SEC: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(4 * 1024 * 1024),
  /** most bytes waiting towards one desktop (its input, protocol replies) @default 4194304 */
  RFB_SEND_BUFFER_BYTES: z.coerce
    .number()
    .int()
    .min(64 * 1024)
    .default(4 * 1024 * 1024),
  /** ms a desktop may leave what the gateway sent it unread before its link is dropped @default 15000 */
  RFB_SEND_STALL_MS: z.coerce.number().int().min(100).default(15_000),
  /** ms one message from a desktop may take from first to last byte before its link is dropped @default 30000 */
  RFB_MESSAGE_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  /**
   * compressed encodings asked for on links that cross a network (remote endpoints), most
   * preferred first, comma-separated from `tight`, `zrle`; empty: Raw there too
   * @default tight,zrle
   */
  RFB_REMOTE_ENCODINGS: z
    .string()
    .default('tight,zrle')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s !== ''),
    )
    .pipe(
      z
        .array(z.enum(['tight', 'zrle']))
        .refine((a) => new Set(a).size === a.length, 'listed twice'),
    ),
  /**
   * other host names this machine serves as separate QEMU processes, comma-separated: VM
   * desktops can be moved to them (live migration on one machine, as the tests run it)
   */
  LOCAL_HOSTS: z.string().default(''),
  /** live migration: most bytes per second of RAM sent, MiB/s @default 1024 */
  MIGRATION_MAX_BANDWIDTH_MIBPS: z.coerce.number().int().min(1).max(100_000).default(1024),
  /** live migration: the guest's pause QEMU aims for at the switch, ms @default 300 */
  MIGRATION_DOWNTIME_MS: z.coerce.number().int().min(1).max(60_000).default(300),
  /** live migration: switch to postcopy after the first pass @default false */
  MIGRATION_POSTCOPY: bool.default(false),
  /** draining a host: how many desktops move at once @default 2 */
  DRAIN_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
});

export type Env = z.input<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  runDir: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  sessionSecret: string | undefined;
  adminUser: string;
  adminPassword: string | undefined;
  logLevel: string;
  trustProxy: string;
  allowedOrigins: string[];
  cookieSecure: 'auto' | boolean;
  sessionMaxAgeMs: number;
  defaultPool: boolean;
  defaultGeometry: { width: number; height: number };
  defaultDisconnectedTimeoutSec: number;
  desktopIsolation: 'sandbox' | 'account';
  desktopUids: { base: number; count: number; lockDir: string };
  cgroupParent: string;
  qemuAccel: 'auto' | 'kvm' | 'tcg';
  /** where the lxd provider finds LXD (files are read when the provider is built) */
  lxd: {
    socket: string;
    remote: { url: string; certFile: string; keyFile: string; serverCertFile: string } | undefined;
    member: string | undefined;
  };
  maxFramesInFlight: number;
  /** video mode for regions in motion: on or off, and the ffmpeg it runs */
  video: { enabled: boolean; ffmpegPath: string };
  login: { maxPerAccount: number; maxPerAccountTotal: number; maxPerIp: number; windowMs: number };
  brokerTickMs: number;
  /** this node among several (decision 11) */
  node: { host: string; id: string; leaseMs: number; presenceSweepMs: number };
  /** lead of the log-off countdown, ms */
  sessionWarningMs: number;
  shutdownDrainMs: number;
  clientDir: string;
  /** this server's host name (HOST_NAME) */
  hostName: string;
  /** every host a desktop may be moved to: this one and LOCAL_HOSTS */
  hosts: string[];
  migration: {
    maxBandwidthBytes: number;
    downtimeLimitMs: number;
    postcopy: boolean;
    drainConcurrency: number;
  };
  /** what a desktop may send and be sent; pools override the first two */
  desktopLimits: {
    clipboardMaxBytes: number;
    maxFramebuffer: { width: number; height: number; pixels: number };
    inputBytesPerSec: number;
    sendBufferBytes: number;
    sendStallMs: number;
    messageTimeoutMs: number;
    /** compressed encodings for remote links, most preferred first */
    remoteEncodings: ('tight' | 'zrle')[];
  };
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  cwd = process.cwd(),
): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(cwd, e.DATA_DIR);
  const [w, h] = e.DEFAULT_GEOMETRY.split('x').map(Number) as [number, number];
  const [fbW, fbH] = e.MAX_FRAMEBUFFER.split('x').map(Number) as [number, number];
  if (fbW < 16 || fbH < 16 || fbW > 16384 || fbH > 16384)
    throw new ConfigError('invalid configuration:\n  MAX_FRAMEBUFFER: each side 16 to 16384');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const hostName = e.HOST_NAME ?? os.hostname();
  const badHost = e.LOCAL_HOSTS.split(',')
    .map((s) => s.trim())
    .find((s) => s !== '' && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(s));
  if (badHost !== undefined)
    throw new ConfigError(
      `invalid configuration:\n  LOCAL_HOSTS: ${JSON.stringify(badHost)} is not a host name (letters, digits, . _ -)`,
    );
  // Stable per data dir (so restarts find the same sockets) and short (unix path limit).
  const tag = createHash('sha256').update(dataDir).digest('hex').slice(0, 8);
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    runDir: e.RUN_DIR ? path.resolve(cwd, e.RUN_DIR) : path.join(os.tmpdir(), `vdi-${uid}-${tag}`),
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    sessionSecret: e.SESSION_SECRET,
    adminUser: e.VDI_ADMIN_USER,
    adminPassword: e.VDI_ADMIN_PASSWORD,
    logLevel: e.LOG_LEVEL,
    trustProxy: e.TRUST_PROXY,
    allowedOrigins: e.ALLOWED_ORIGINS.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    cookieSecure: e.COOKIE_SECURE === 'auto' ? 'auto' : e.COOKIE_SECURE === 'true',
    sessionMaxAgeMs: e.SESSION_MAX_AGE_HOURS * 3600_000,
    defaultPool: e.DEFAULT_POOL,
    defaultGeometry: { width: w, height: h },
    defaultDisconnectedTimeoutSec: e.DEFAULT_DISCONNECTED_TIMEOUT,
    desktopIsolation: e.DESKTOP_ISOLATION,
    desktopUids: {
      base: e.DESKTOP_UID_BASE,
      count: e.DESKTOP_UID_COUNT,
      lockDir: path.resolve(cwd, e.DESKTOP_UID_LOCK_DIR),
    },
    cgroupParent: e.CGROUP_PARENT,
    qemuAccel: e.QEMU_ACCEL,
    lxd: {
      socket: e.LXD_SOCKET,
      remote: lxdRemote(e),
      member: e.LXD_MEMBER,
    },
    maxFramesInFlight: e.MAX_FRAMES_IN_FLIGHT,
    video: { enabled: e.VIDEO_MODE === 'on', ffmpegPath: e.VIDEO_FFMPEG },
    login: {
      maxPerAccount: e.LOGIN_MAX_PER_ACCOUNT,
      maxPerAccountTotal: e.LOGIN_MAX_PER_ACCOUNT_TOTAL,
      maxPerIp: e.LOGIN_MAX_PER_IP,
      windowMs: e.LOGIN_WINDOW_SEC * 1000,
    },
    brokerTickMs: e.BROKER_TICK_MS,
    hostName,
    hosts: [
      ...new Set([
        hostName,
        ...e.LOCAL_HOSTS.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      ]),
    ],
    migration: {
      maxBandwidthBytes: e.MIGRATION_MAX_BANDWIDTH_MIBPS * 1024 * 1024,
      downtimeLimitMs: e.MIGRATION_DOWNTIME_MS,
      postcopy: e.MIGRATION_POSTCOPY,
      drainConcurrency: e.DRAIN_CONCURRENCY,
    },
    node: {
      host: e.HOST_NAME ?? os.hostname(),
      id: e.NODE_ID ?? `${e.HOST_NAME ?? os.hostname()}-${process.pid}`,
      leaseMs: e.NODE_LEASE_MS,
      presenceSweepMs: e.PRESENCE_SWEEP_MS,
    },
    sessionWarningMs: e.SESSION_WARNING_SEC * 1000,
    desktopLimits: {
      clipboardMaxBytes: e.CLIPBOARD_MAX_BYTES,
      maxFramebuffer: { width: fbW, height: fbH, pixels: e.MAX_FRAMEBUFFER_PIXELS },
      inputBytesPerSec: e.INPUT_BYTES_PER_SEC,
      sendBufferBytes: e.RFB_SEND_BUFFER_BYTES,
      sendStallMs: e.RFB_SEND_STALL_MS,
      messageTimeoutMs: e.RFB_MESSAGE_TIMEOUT_MS,
      remoteEncodings: e.RFB_REMOTE_ENCODINGS,
    },
    shutdownDrainMs: e.SHUTDOWN_DRAIN_MS,
    clientDir: e.CLIENT_DIR
      ? path.resolve(cwd, e.CLIENT_DIR)
      : path.resolve(import.meta.dirname, '../../../client/dist'),
  };
}

function lxdRemote(e: z.infer<typeof EnvSchema>): Config['lxd']['remote'] {
  if (e.LXD_URL === undefined) return undefined;
  if (!e.LXD_CLIENT_CERT || !e.LXD_CLIENT_KEY || !e.LXD_SERVER_CERT) {
    throw new ConfigError(
      'invalid configuration:\n  LXD_URL needs LXD_CLIENT_CERT, LXD_CLIENT_KEY and LXD_SERVER_CERT',
    );
  }
  if (!e.LXD_URL.startsWith('https://'))
    throw new ConfigError('invalid configuration:\n  LXD_URL: https:// only');
  return {
    url: e.LXD_URL.replace(/\/+$/, ''),
    certFile: e.LXD_CLIENT_CERT,
    keyFile: e.LXD_CLIENT_KEY,
    serverCertFile: e.LXD_SERVER_CERT,
  };
}
