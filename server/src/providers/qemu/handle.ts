/**
 * What the store keeps about a running VM (its handle), and where a desktop's files live:
 * enough to find the VM again after the server restarts (docs/architecture.md, decision 2).
 */
import path from 'node:path';
import { z } from 'zod';
import { ProviderError, type DesktopHandle } from '../types.js';

/** desktop ids name files and sockets: letters, digits and . _ - only */
export const DESKTOP_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const Handle = z.object({
  desktopId: z.string().regex(DESKTOP_ID),
  pid: z.number().int().positive(),
  /** field 22 of /proc/<pid>/stat (clock ticks after boot): a reused pid has another */
  startTime: z.string().regex(/^\d+$/),
  qmpPath: z.string().min(1),
  vncPath: z.string().min(1),
  pidPath: z.string().min(1),
  logPath: z.string().min(1),
  overlayPath: z.string().min(1),
  goldenPath: z.string().min(1),
  accel: z.enum(['kvm', 'tcg']),
  memoryMb: z.number().int().positive(),
  vcpus: z.number().int().positive(),
  /** the user QEMU dropped to, when it did */
  runAs: z.object({ user: z.string(), uid: z.number().int(), gid: z.number().int() }).optional(),
  /** the VM's cgroup (limits, usage, kill-all) */
  cgroup: z.object({ dirs: z.array(z.string()) }).optional(),
  limits: z
    .object({
      cpuWeight: z.number(),
      cpuMax: z.number(),
      memoryMb: z.number(),
      pids: z.number(),
      diskMb: z.number(),
    })
    .optional(),
  /** the memory limit written to the cgroup: the pool's, or RAM + QEMU's overhead */
  memoryLimitMb: z.number().optional(),
  /** whether the account is this VM's own (its uid lock is released at destroy) */
  ownAccount: z.boolean().optional(),
  /**
   * the host this VM runs on, when it was moved there (migrate.ts); absent: the provider's
   * own host, with the files where vmPaths puts them without a host
   */
  host: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/)
    .optional(),
});
export type QemuHandle = z.infer<typeof Handle>;

export function parseHandle(handle: DesktopHandle): QemuHandle {
  const parsed = Handle.safeParse(handle);
  if (!parsed.success) {
    throw new ProviderError(
      'QEMU_BAD_HANDLE',
      `not a qemu desktop handle: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** The handles among these that are a QEMU desktop's (sweeps skip the others). */
export function qemuHandles(known: readonly DesktopHandle[]): QemuHandle[] {
  return known.flatMap((k) => {
    const parsed = Handle.safeParse(k);
    return parsed.success ? [parsed.data] : [];
  });
}

/** A desktop's files: its sockets, pid file and log in the run dir, its disk in the data dir. */
export interface VmPaths {
  qmpPath: string;
  vncPath: string;
  pidPath: string;
  logPath: string;
  overlayPath: string;
}

/** host names name directories: letters, digits and . _ - only */
export const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * `runDir` is the provider's own (`<runDir>/qemu`), `dataDir` the server's. `hostDir`, for a
 * VM moved to another host served from this machine (migrate.ts), puts its files in a
 * directory of that host's (`<runDir>/qemu/@<host>/`), so the two QEMU processes of a move
 * never share a file.
 */
export function vmPaths(
  runDir: string,
  dataDir: string,
  desktopId: string,
  hostDir?: string,
): VmPaths {
  const sub = hostDir === undefined ? '' : `@${hostDir}`;
  const run = (ext: string) => path.join(runDir, sub, `${desktopId}.${ext}`);
  return {
    qmpPath: run('qmp'),
    vncPath: run('vnc'),
    pidPath: run('pid'),
    logPath: run('log'),
    overlayPath: path.join(dataDir, 'qemu', sub, `${desktopId}.qcow2`),
  };
}
