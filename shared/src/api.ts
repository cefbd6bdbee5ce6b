import { z } from 'zod';

/**
 * REST bodies and answers under /api. The server validates every body with these schemas
 * and builds /api/openapi.json from them; the client uses the inferred types.
 */

export const Username = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._@-]+$/, 'letters, digits and . _ @ - only');
export const Password = z.string().min(1).max(1024);
export const NewPassword = z.string().min(8).max(1024);
export const Role = z.enum(['user', 'admin']);
export type Role = z.infer<typeof Role>;
export const Id = z.string().min(1).max(64);

export const LoginBody = z.strictObject({ username: Username, password: Password });
export type LoginBody = z.infer<typeof LoginBody>;

export const Me = z.object({
  id: z.string(),
  username: z.string(),
  role: Role,
});
export type Me = z.infer<typeof Me>;

export const ProviderKind = z.enum(['xvnc', 'qemu', 'vnc']);
export type ProviderKind = z.infer<typeof ProviderKind>;
export const AssignmentType = z.enum(['dedicated', 'floating']);
export type AssignmentType = z.infer<typeof AssignmentType>;

/** Openbox starts the terminal once it manages windows, so the terminal is focused. */
export const DEFAULT_SESSION_COMMAND = 'exec openbox --startup xterm';

/**
 * What a pool lets its desktops send the gateway (DESIGN.md decision 13), in every provider's
 * template. Unset fields take the server's configured defaults (CLIPBOARD_MAX_BYTES,
 * MAX_FRAMEBUFFER, MAX_FRAMEBUFFER_PIXELS).
 */
export const DesktopLimitFields = {
  /** largest clipboard text passed between the desktop and its viewers, bytes */
  clipboardMaxBytes: z
    .number()
    .int()
    .min(0)
    .max(64 * 1024 * 1024)
    .optional(),
  /** largest screen the gateway accepts from the desktop; a larger one is refused with a reason */
  maxFramebuffer: z
    .strictObject({
      width: z.number().int().min(16).max(16384),
      height: z.number().int().min(16).max(16384),
      /** largest area, pixels (the gateway holds 4 bytes per pixel); default width × height */
      pixels: z
        .number()
        .int()
        .min(256)
        .max(16384 * 16384)
        .optional(),
    })
    .optional(),
};

/** The limit fields of any provider's template (other fields ignored). */
export const DesktopLimits = z.object(DesktopLimitFields);
export type DesktopLimits = z.infer<typeof DesktopLimits>;

/**
 * A desktop's network: `none` = loopback only; `outbound` = its own network namespace with a
 * user-mode stack (slirp4netns) that reaches the outside but not the host's loopback services;
 * `host` = the host's network, for trusted pools only.
 */
export const NetworkMode = z.enum(['none', 'outbound', 'host']);
export type NetworkMode = z.infer<typeof NetworkMode>;

const MAX_MEMORY_MB = 4 * 1024 * 1024;
/** below these a desktop's X server, window manager and terminal cannot start */
const MIN_MEMORY_MB = 64;
const MIN_PIDS = 16;
/** what QEMU needs beside the guest's RAM, at the least */
const MIN_QEMU_OVERHEAD_MB = 64;

/** Resource limits of each desktop of a pool (one cgroup per desktop). 0 = no limit. */
function limitsSchema(defaults: { memoryMb: number; pids: number }) {
  return z.strictObject({
    /** CPU share against other desktops when the CPUs are busy; 100 = a normal share */
    cpuWeight: z.number().int().min(1).max(10000).default(100),
    /** at most this many CPUs' worth of time (e.g. 1.5); 0 = no cap */
    cpuMax: z.number().min(0).max(1024).default(0),
    /** memory the desktop's processes may hold, MiB; beyond it the kernel kills one of them */
    memoryMb: z
      .number()
      .int()
      .min(0)
      .max(MAX_MEMORY_MB)
      .refine((v) => v === 0 || v >= MIN_MEMORY_MB, {
        message: `0 (no limit) or at least ${MIN_MEMORY_MB} MiB: less cannot run a desktop`,
      })
      .default(defaults.memoryMb),
    /** processes and threads at once (caps a fork bomb) */
    pids: z
      .number()
      .int()
      .min(0)
      .max(4_194_304)
      .refine((v) => v === 0 || v >= MIN_PIDS, {
        message: `0 (no limit) or at least ${MIN_PIDS}: less cannot run a desktop`,
      })
      .default(defaults.pids),
    /** disk space of the home, MiB (a file system of its own); 0 = no quota */
    diskMb: z.number().int().min(0).max(MAX_MEMORY_MB).default(0),
  });
}

export const XvncLimits = limitsSchema({ memoryMb: 4096, pids: 1024 });
export type XvncLimits = z.infer<typeof XvncLimits>;
/** memoryMb 0 for a VM: its RAM plus QEMU's own overhead (see the qemu provider) */
export const QemuLimits = limitsSchema({ memoryMb: 0, pids: 256 });
export type QemuLimits = z.infer<typeof QemuLimits>;

export const XvncTemplate = z.strictObject({
  ...DesktopLimitFields,
  width: z.number().int().min(320).max(8192).default(1280),
  height: z.number().int().min(200).max(8192).default(800),
  /** shell command run in the desktop (window manager and apps) */
  sessionCommand: z.string().min(1).max(4096).default(DEFAULT_SESSION_COMMAND),
  network: NetworkMode.default('outbound'),
  limits: XvncLimits.prefault({}),
});
export type XvncTemplate = z.infer<typeof XvncTemplate>;

export const QemuTemplate = z
  .strictObject({
    ...DesktopLimitFields,
    /** path of the golden qcow2 image on the server (read-only; desktops are linked clones) */
    image: z.string().min(1).max(4096),
    /** optional kernel + initrd for images without a boot loader */
    kernel: z.string().max(4096).optional(),
    initrd: z.string().max(4096).optional(),
    append: z.string().max(4096).optional(),
    memoryMb: z.number().int().min(64).max(65536).default(256),
    vcpus: z.number().int().min(1).max(64).default(1),
    limits: QemuLimits.prefault({}),
  })
  .refine(
    (t) => t.limits.memoryMb === 0 || t.limits.memoryMb >= t.memoryMb + MIN_QEMU_OVERHEAD_MB,
    {
      message: `limits.memoryMb must leave QEMU at least ${MIN_QEMU_OVERHEAD_MB} MiB beyond the VM's memory (or be 0 = automatic)`,
      path: ['limits', 'memoryMb'],
    },
  );
export type QemuTemplate = z.infer<typeof QemuTemplate>;

export const VncHost = z.strictObject({
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
  password: z.string().max(8).optional(),
  name: z.string().max(128).optional(),
});
export const VncTemplate = z.strictObject({
  ...DesktopLimitFields,
  hosts: z.array(VncHost).min(1).max(1000),
});
export type VncTemplate = z.infer<typeof VncTemplate>;

const PoolFields = {
  name: z.string().min(1).max(128),
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
  name: z.string().min(1).max(128),
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

export const AuditEntry = z.object({
  id: z.number(),
  at: z.string(),
  actor: z.string().nullable(),
  action: z.string(),
  target: z.string().nullable(),
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
