import { z } from 'zod';

/**
 * Pool templates: what each provider needs to start a pool's desktops, with the limits and
 * network every desktop of the pool gets. Validated by the server when a pool is created or
 * changed, and by the admin console's forms.
 */

/** Openbox starts the terminal once it manages windows, so the terminal is focused. */
export const DEFAULT_SESSION_COMMAND = 'exec openbox --startup xterm';

/**
 * What a pool lets its desktops send the gateway (docs/architecture.md, decision 13), in every provider's
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
  /**
   * The sizes viewers may resize the desktop to ("fit to window"); a request outside is
   * clamped into it. Unset: 640×480 up to the largest screen the gateway accepts.
   */
  resizeRange: z
    .strictObject({
      minWidth: z.number().int().min(64).max(16384),
      minHeight: z.number().int().min(64).max(16384),
      maxWidth: z.number().int().min(64).max(16384),
      maxHeight: z.number().int().min(64).max(16384),
    })
    .refine((r) => r.minWidth <= r.maxWidth && r.minHeight <= r.maxHeight, {
      message: 'the minimum size must not be larger than the maximum',
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

/** A memory limit in MiB, for any provider: 0 (none) or enough to run a desktop. */
const memoryMb = (defaultMb: number) =>
  z
    .number()
    .int()
    .min(0)
    .max(MAX_MEMORY_MB)
    .refine((v) => v === 0 || v >= MIN_MEMORY_MB, {
      message: `0 (no limit) or at least ${MIN_MEMORY_MB} MiB: less cannot run a desktop`,
    })
    .default(defaultMb);

/** Resource limits of each desktop of a pool (one cgroup per desktop). 0 = no limit. */
function limitsSchema(defaults: { memoryMb: number; pids: number }) {
  return z.strictObject({
    /** CPU share against other desktops when the CPUs are busy; 100 = a normal share */
    cpuWeight: z.number().int().min(1).max(10000).default(100),
    /** at most this many CPUs' worth of time (e.g. 1.5); 0 = no cap */
    cpuMax: z.number().min(0).max(1024).default(0),
    /** memory the desktop's processes may hold, MiB; beyond it the kernel kills one of them */
    memoryMb: memoryMb(defaults.memoryMb),
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

/**
 * A published application: the pool's sessions run only this program (no desktop), its window
 * maximised to the desktop's size, and a session ends when the program exits.
 */
export const PublishedApp = z.strictObject({
  /** what users see in their list instead of the pool's name (e.g. "Calculator") */
  name: z.string().trim().min(1).max(64),
  /** shell command that starts the program; its exit ends the session */
  command: z.string().trim().min(1).max(4096),
});
export type PublishedApp = z.infer<typeof PublishedApp>;

/** default largest upload into a desktop, MiB */
export const DEFAULT_MAX_UPLOAD_MB = 1024;

export const XvncTemplate = z.strictObject({
  ...DesktopLimitFields,
  /** largest file a user may upload into ~/Uploads, MiB; 0 = uploads off */
  maxUploadMb: z.number().int().min(0).max(1_048_576).default(DEFAULT_MAX_UPLOAD_MB),
  /** publish one application instead of a desktop (sessionCommand is then not used) */
  app: PublishedApp.optional(),
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

/**
 * One existing VNC server: `host` and `port` over TCP, or `socket`, the absolute path of a
 * unix socket on the server's own machine (TigerVNC's `-rfbunixpath`), which costs both ends
 * less CPU per byte than loopback TCP.
 */
export const VncHost = z
  .strictObject({
    host: z.string().min(1).max(255).optional(),
    port: z.number().int().min(1).max(65535).optional(),
    socket: z
      .string()
      .max(4096)
      .regex(/^\/[^\0]*$/, 'socket must be an absolute path')
      .optional(),
    password: z.string().max(8).optional(),
    name: z.string().max(128).optional(),
  })
  .refine(
    (h) =>
      h.socket !== undefined
        ? h.host === undefined && h.port === undefined
        : h.host !== undefined && h.port !== undefined,
    { message: 'a vnc host is either host and port, or socket' },
  );
export const VncTemplate = z.strictObject({
  ...DesktopLimitFields,
  hosts: z.array(VncHost).min(1).max(1000),
});
export type VncTemplate = z.infer<typeof VncTemplate>;

/** How a pool of LXD desktops spreads over the cluster's members (docs/architecture.md, "Many hosts"). */
export const PlacementPolicy = z.enum(['breadth-first', 'depth-first']);
export type PlacementPolicy = z.infer<typeof PlacementPolicy>;

export const LxdLimits = z.strictObject({
  /** at most this many CPUs' worth of time (e.g. 1.5 → limits.cpu 2, allowance 150ms/100ms); 0 = no cap */
  cpuMax: z.number().min(0).max(1024).default(0),
  /** limits.memory, MiB; beyond it the kernel kills a process inside the container only */
  memoryMb: memoryMb(2048),
  /** limits.processes (caps a fork bomb) */
  pids: z
    .number()
    .int()
    .min(0)
    .max(4_194_304)
    .refine((v) => v === 0 || v >= MIN_PIDS, {
      message: `0 (no limit) or at least ${MIN_PIDS}: less cannot run a desktop`,
    })
    .default(1024),
});
export type LxdLimits = z.infer<typeof LxdLimits>;

/** A pool of LXD system containers made from a desktop image (infra/lxd/build-image.sh). */
/** An absolute path on the cluster's members (the same on each: shared storage). */
const MemberPath = z
  .string()
  .min(2)
  .max(4096)
  .regex(/^\/[^\0]*$/, 'an absolute path');

/**
 * A VM desktop on an LXD cluster: QEMU in a system container (LXD's own VMs need
 * vhost_vsock). The golden image, kernel and initrd are files every member sees, mounted
 * read-only into the container; its overlay is the container's own.
 */
export const LxdVm = z.strictObject({
  /** the golden qcow2 image */
  image: MemberPath,
  kernel: MemberPath.optional(),
  initrd: MemberPath.optional(),
  append: z.string().max(4096).optional(),
  memoryMb: z.number().int().min(64).max(65536).default(256),
  vcpus: z.number().int().min(1).max(64).default(1),
});
export type LxdVm = z.infer<typeof LxdVm>;

export const LxdTemplate = z.strictObject({
  ...DesktopLimitFields,
  /** image alias or fingerprint on the LXD server @default vdi-desktop */
  image: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .default('vdi-desktop'),
  /** LXD storage pool of the containers' root disks @default default */
  storagePool: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .default('default'),
  width: z.number().int().min(320).max(8192).default(1280),
  height: z.number().int().min(200).max(8192).default(800),
  /** an LXD managed network to attach as eth0; none (no network device at all) when unset */
  network: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/)
    .optional(),
  placement: PlacementPolicy.default('breadth-first'),
  limits: LxdLimits.prefault({}),
  /** a VM desktop instead of an X11 one (the image runs QEMU); it can move live between members */
  vm: LxdVm.optional(),
});
export type LxdTemplate = z.infer<typeof LxdTemplate>;
