import { z } from 'zod';
import { LxdTemplate, NetworkMode, QemuTemplate, VncTemplate, XvncTemplate } from './templates.js';

/**
 * REST bodies and answers under /api. The server validates every body with these schemas
 * and builds /api/openapi.json from them; the client uses the inferred types.
 */

/** The most characters a username may have; a longer one is refused, never cut. */
export const USERNAME_MAX = 64;
/**
 * Usernames: letters of any script (Zoë, Łukasz, 山田), digits and . _ @ -, 1 to 64
 * characters. The admin console's hint says the same (USERNAME_HINT).
 */
export const Username = z
  .string()
  .min(1, 'enter a username')
  .max(USERNAME_MAX, `at most ${USERNAME_MAX} characters`)
  .regex(/^[\p{L}\p{M}\p{N}._@-]+$/u, 'letters, digits and . _ @ - only (no spaces)');
export const USERNAME_HINT = `Letters (any language), digits and . _ @ -; at most ${USERNAME_MAX} characters`;

/** A pool's or group's name: not empty, not only spaces (kept without its outer spaces). */
export const Name = z
  .string()
  .trim()
  .min(1, 'must not be empty or only spaces')
  .max(128, 'at most 128 characters');
export const Password = z.string().min(1).max(1024);
export const NewPassword = z.string().min(8).max(1024);
export const Role = z.enum(['user', 'admin']);
export type Role = z.infer<typeof Role>;
export const Id = z.string().min(1).max(64);

/**
 * The keyboard layout the viewer maps physical keys (KeyboardEvent.code) with. `auto`: the
 * characters the browser reports (the computer's own layout); the others map each key as
 * that layout would, AltGr included, whatever the computer's layout is.
 */
export const KeyboardLayout = z.enum(['auto', 'us', 'uk', 'de', 'fr']);
export type KeyboardLayout = z.infer<typeof KeyboardLayout>;

/** A user's own viewer preferences (GET/PUT /api/me/preferences). */
export const Preferences = z.strictObject({
  keyboardLayout: KeyboardLayout.default('auto'),
});
export type Preferences = z.infer<typeof Preferences>;

export const LoginBody = z.strictObject({ username: Username, password: Password });
export type LoginBody = z.infer<typeof LoginBody>;

export const Me = z.object({
  id: z.string(),
  username: z.string(),
  role: Role,
});
export type Me = z.infer<typeof Me>;
/** The answer to a sign-in. */
export const LoginAnswer = z.object({ user: Me });
export type LoginAnswer = z.infer<typeof LoginAnswer>;

export const ProviderKind = z.enum(['xvnc', 'qemu', 'vnc', 'lxd']);
export type ProviderKind = z.infer<typeof ProviderKind>;
export const AssignmentType = z.enum(['dedicated', 'floating']);
export type AssignmentType = z.infer<typeof AssignmentType>;

const PoolFields = {
  name: Name,
  description: z.string().max(1024).default(''),
  assignment: AssignmentType.default('floating'),
  minSize: z.number().int().min(0).max(1000).default(0),
  maxSize: z.number().int().min(1).max(1000).default(10),
  /** desktops kept started ahead of demand */
  spares: z.number().int().min(0).max(100).default(0),
  /** seconds a session may stay without a viewer before it is logged off; 0 = never */
  disconnectedTimeoutSec: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .default(3600),
  /** seconds without input before the session is logged off; 0 = never */
  idleTimeoutSec: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .default(0),
  /** longest a session may last; 0 = no limit */
  maxSessionSec: z
    .number()
    .int()
    .min(0)
    .max(365 * 86400)
    .default(0),
  maxPerUser: z.number().int().min(1).max(100).default(1),
};

export const PoolCreateBody = z.discriminatedUnion('provider', [
  z.strictObject({
    ...PoolFields,
    provider: z.literal('xvnc'),
    template: XvncTemplate.default(XvncTemplate.parse({})),
  }),
  z.strictObject({ ...PoolFields, provider: z.literal('qemu'), template: QemuTemplate }),
  z.strictObject({ ...PoolFields, provider: z.literal('vnc'), template: VncTemplate }),
  z.strictObject({
    ...PoolFields,
    provider: z.literal('lxd'),
    template: LxdTemplate.default(LxdTemplate.parse({})),
  }),
]);
export type PoolCreateBody = z.infer<typeof PoolCreateBody>;

export const PoolUpdateBody = z.strictObject({
  name: PoolFields.name.optional(),
  description: z.string().max(1024).optional(),
  minSize: z.number().int().min(0).max(1000).optional(),
  maxSize: z.number().int().min(1).max(1000).optional(),
  spares: z.number().int().min(0).max(100).optional(),
  disconnectedTimeoutSec: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .optional(),
  idleTimeoutSec: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .optional(),
  maxSessionSec: z
    .number()
    .int()
    .min(0)
    .max(365 * 86400)
    .optional(),
  maxPerUser: z.number().int().min(1).max(100).optional(),
  draining: z.boolean().optional(),
  template: z.record(z.string(), z.unknown()).optional(),
});
export type PoolUpdateBody = z.infer<typeof PoolUpdateBody>;

export const Pool = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  provider: ProviderKind,
  assignment: AssignmentType,
  template: z.record(z.string(), z.unknown()),
  minSize: z.number(),
  maxSize: z.number(),
  spares: z.number(),
  disconnectedTimeoutSec: z.number(),
  idleTimeoutSec: z.number(),
  maxSessionSec: z.number(),
  maxPerUser: z.number(),
  draining: z.boolean(),
  createdAt: z.string(),
});
export type Pool = z.infer<typeof Pool>;

/**
 * How a desktop is isolated and what it uses now, for the admin console (sessions and the
 * pool's desktops). Null for desktops the server does not run itself (the vnc provider).
 */
export const DesktopIsolation = z.object({
  /**
   * sandbox: own account, namespaces and cgroup; account: own account and cgroup, the host's
   * namespaces; vm: a VM in QEMU as its own account under seccomp and a cgroup; none: runs as
   * the server's account (the server is not root), nothing isolated
   */
  mode: z.enum(['sandbox', 'account', 'vm', 'none']),
  uid: z.number().int().nullable(),
  account: z.string().nullable(),
  network: NetworkMode.nullable(),
  /** the limits in force (0 = none); null when nothing is enforced */
  limits: z
    .object({
      cpuWeight: z.number(),
      cpuMax: z.number(),
      memoryMb: z.number(),
      pids: z.number(),
      diskMb: z.number(),
    })
    .nullable(),
  /** live figures from the desktop's cgroup; null when it has none or it is gone */
  usage: z
    .object({
      cpuSeconds: z.number(),
      /** CPU use since the previous look, in % of one CPU; null on the first look */
      cpuPercent: z.number().nullable(),
      memoryBytes: z.number(),
      tasks: z.number(),
      /** processes the memory limit has killed so far */
      oomKills: z.number(),
    })
    .nullable(),
  /** what an admin should know, e.g. why nothing is isolated */
  note: z.string().nullable(),
});
export type DesktopIsolation = z.infer<typeof DesktopIsolation>;

export const SessionInfo = z.object({
  id: z.string(),
  userId: z.string(),
  username: z.string(),
  poolId: z.string(),
  poolName: z.string(),
  desktopId: z.string(),
  desktopName: z.string(),
  state: z.enum(['starting', 'active', 'disconnected', 'ended']),
  createdAt: z.string(),
  stateSince: z.string(),
  endedReason: z.string().nullable(),
});
export type SessionInfo = z.infer<typeof SessionInfo>;

/** One row of "my desktops": a pool the user may use, with their live session in it. */
export const MyDesktop = z.object({
  poolId: z.string(),
  poolName: z.string(),
  description: z.string(),
  provider: ProviderKind,
  assignment: AssignmentType,
  draining: z.boolean(),
  sessions: z.array(SessionInfo),
  /** the published application's name, when the pool publishes one instead of a desktop */
  app: z.string().optional(),
});
export type MyDesktop = z.infer<typeof MyDesktop>;

export const ConnectResult = z.object({
  sessionId: z.string(),
  desktopId: z.string(),
  resumed: z.boolean(),
});
export type ConnectResult = z.infer<typeof ConnectResult>;

export const ApiError = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});
export type ApiError = z.infer<typeof ApiError>;

export const UserCreateBody = z.strictObject({
  username: Username,
  password: NewPassword,
  role: Role.default('user'),
  displayName: z.string().max(128).default(''),
});
export type UserCreateBody = z.infer<typeof UserCreateBody>;

export const UserUpdateBody = z.strictObject({
  role: Role.optional(),
  disabled: z.boolean().optional(),
  displayName: z.string().max(128).optional(),
  password: NewPassword.optional(),
});
export type UserUpdateBody = z.infer<typeof UserUpdateBody>;

export const User = z.object({
  id: z.string(),
  username: z.string(),
  displayName: z.string(),
  role: Role,
  disabled: z.boolean(),
  createdAt: z.string(),
  groups: z.array(z.string()),
});
export type User = z.infer<typeof User>;

export const GroupCreateBody = z.strictObject({
  name: Name,
  description: z.string().max(1024).default(''),
});
export const GroupMembersBody = z.strictObject({ userIds: z.array(Id).max(10000) });
export const Group = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  members: z.array(z.string()),
});
export type Group = z.infer<typeof Group>;

export const EntitlementBody = z.strictObject({
  poolId: Id,
  principalType: z.enum(['user', 'group']),
  principalId: Id,
});
export type EntitlementBody = z.infer<typeof EntitlementBody>;
export const Entitlement = EntitlementBody.extend({
  id: z.string(),
  principalName: z.string(),
  poolName: z.string(),
});
export type Entitlement = z.infer<typeof Entitlement>;

export const MessageBody = z.strictObject({ text: z.string().min(1).max(2000) });

/** What an administrator may do to a VM's power: reset, ACPI power-down, pause, resume. */
export const PowerAction = z.enum(['reset', 'powerdown', 'stop', 'cont']);
export type PowerAction = z.infer<typeof PowerAction>;
export const PowerBody = z.strictObject({ action: PowerAction });
/** A snapshot's name: also part of a URL path */
export const SnapshotName = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits and _ . - only');

/** A host's name (a cluster member, or another host name this machine serves) */
export const HostName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'letters, digits and _ . - only');
/** POST /api/admin/desktops/:id/move: live-migrate a running VM desktop to a host */
export const MoveBody = z.strictObject({ host: HostName });
/** What a move took (figures from QEMU and the provider), ms and bytes */
export const MoveResult = z.object({
  desktopId: z.string(),
  from: z.string(),
  to: z.string(),
  totalMs: z.number(),
  /** the guest's pause (QMP query-migrate `downtime`) */
  downtimeMs: z.number(),
  setupMs: z.number(),
  mirrorMs: z.number(),
  migrateMs: z.number(),
  /** of migrateMs, the destination running while pulling the pages left (postcopy); 0 without */
  postcopyMs: z.number(),
  ramBytes: z.number(),
});
export type MoveResult = z.infer<typeof MoveResult>;
/** POST /api/admin/hosts/:host/drain: move every VM desktop off a host */
export const DrainBody = z.strictObject({ to: HostName.optional() });
export const DrainResult = z.object({
  host: z.string(),
  to: z.string(),
  moved: z.number(),
  failed: z.number(),
  results: z.array(
    z.object({
      desktopId: z.string(),
      ok: z.boolean(),
      totalMs: z.number().optional(),
      downtimeMs: z.number().optional(),
      error: z.string().optional(),
    }),
  ),
});
export type DrainResult = z.infer<typeof DrainResult>;
/** GET /api/admin/hosts/move-targets: where VM desktops can be moved, and which host is this server's */
export const HostList = z.object({
  self: z.string(),
  hosts: z.array(z.string()),
  /** asked for one desktop: the host it runs on (its provider's member, for LXD) */
  current: z.string().optional(),
});
export type HostList = z.infer<typeof HostList>;

export const AuditEntry = z.object({
  id: z.number(),
  at: z.string(),
  actor: z.string().nullable(),
  action: z.string(),
  target: z.string().nullable(),
  /**
   * what the target id names, for people: a user's or pool's name, a session as
   * "user · pool", a desktop's name; absent when it is not (or no longer) known
   */
  targetName: z.string().optional(),
  detail: z.unknown(),
  ip: z.string().nullable(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

export const AuditQuery = z.strictObject({
  action: z.string().max(64).optional(),
  actor: z.string().max(64).optional(),
  target: z.string().max(128).optional(),
  since: z.iso.datetime().optional(),
  until: z.iso.datetime().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

/*
 * Admin answers: what the admin console's tables show, built by the server's admin routes
 * (server/src/api/admin/) and read by the console (client/src/admin/).
 */

/** GET /api/admin/pools: a pool with its desktops and live sessions counted. */
export const AdminPool = Pool.extend({
  /** desktops that run or are starting or stopping (all but the stopped ones) */
  desktops: z.number(),
  /** running without a session: warm spares */
  ready: z.number(),
  inUse: z.number(),
  /** dedicated desktops at rest, disk kept for their owner */
  stopped: z.number(),
  /** sessions not ended */
  sessions: z.number(),
});
export type AdminPool = z.infer<typeof AdminPool>;

/** GET /api/admin/sessions: a session with its viewers and its desktop. */
export const AdminSession = SessionInfo.extend({
  /** this node's viewers of the session, view-only shadows apart */
  viewers: z.number(),
  shadows: z.number(),
  kbps: z.number(),
  fps: z.number(),
  lastInputAt: z.string().nullable(),
  /** the pool's provider ('?' when the pool is gone) */
  provider: z.string(),
  /** the desktop's health: running, unresponsive, paused…; its state when it does not run */
  desktopState: z.string(),
  /** provider facts: display and pid (Xvnc), acceleration KVM/TCG, memory, vCPUs (VMs)… */
  facts: z.record(z.string(), z.string()),
  /** the desktop's account, network, limits and current CPU/memory */
  isolation: DesktopIsolation.nullable(),
});
export type AdminSession = z.infer<typeof AdminSession>;

/** GET /api/admin/pools/:id/desktops: one desktop of a pool. */
export const AdminDesktop = z.object({
  id: z.string(),
  name: z.string(),
  state: z.string(),
  ownerUserId: z.string().nullable(),
  /** running, unresponsive, paused…; 'stopped' when it does not run */
  health: z.string(),
  error: z.string().nullable(),
  stateSince: z.string(),
  facts: z.record(z.string(), z.string()),
  /** the desktop's account, network, limits and current CPU/memory */
  isolation: DesktopIsolation.nullable(),
});
export type AdminDesktop = z.infer<typeof AdminDesktop>;

/** A host desktops are placed on (an LXD cluster member), with its load. */
export const Host = z.object({
  id: z.string(),
  provider: ProviderKind,
  address: z.string(),
  /** active: takes new desktops; draining: keeps its desktops, takes no new ones; down: offline */
  state: z.enum(['active', 'draining', 'down']),
  online: z.boolean(),
  detail: z.string(),
  /** most desktops on this host; 0 = no limit */
  maxSessions: z.number(),
  sessions: z.number(),
  lastSeen: z.string().nullable(),
});
export type Host = z.infer<typeof Host>;

export const HostUpdateBody = z
  .strictObject({
    state: z.enum(['active', 'draining']).optional(),
    maxSessions: z.number().int().min(0).max(100_000).optional(),
  })
  .refine((b) => b.state !== undefined || b.maxSessions !== undefined, {
    message: 'give a state or maxSessions',
  });
export type HostUpdateBody = z.infer<typeof HostUpdateBody>;
