/**
 * Start-up reconciliation of the run directory: every desktop started here has a directory
 * `<runDir>/x-<id>`; one that no known handle accounts for (the server died between starting
 * a desktop and recording it, or while starting it) is stopped and removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { stopGroups } from '../processes.js';
import type { DesktopHandle } from '../types.js';
import { readSandboxInfo } from '../sandbox/launch.js';
import { pidNamespaceOf } from '../sandbox/proc.js';
import { asHandle, type XvncHandle } from './handle.js';

/**
 * Stops the desktops of run directories no known handle accounts for, with `destroy` when
 * the directory recorded the desktop's handle; returns how many directories it removed.
 */
export async function sweepRunDirs(
  runDir: string,
  known: readonly XvncHandle[],
  destroy: (recorded: XvncHandle) => Promise<void>,
  log: Logger,
): Promise<number> {
  const keep = new Set(known.map((h) => path.resolve(h.socket)));
  let removed = 0;
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(runDir).filter((e) => e.startsWith('x-'));
  } catch {
    /* no run dir yet */
  }
  for (const e of entries) {
    const dir = path.join(runDir, e);
    const sockets = [path.join(dir, 'rfb.sock'), path.join(dir, 'd', 'rfb.sock')];
    if (sockets.some((s) => keep.has(s))) continue;
    let recorded: XvncHandle | undefined;
    try {
      recorded = asHandle(
        JSON.parse(fs.readFileSync(path.join(dir, 'handle.json'), 'utf8')) as DesktopHandle,
      );
    } catch {
      /* started but never finished starting, or from an older version */
    }
    if (recorded) {
      await destroy(recorded);
    } else {
      // died while starting: bwrap may have reported its sandbox, whose first process
      // takes every other one with it (the cgroup sweep catches the rest)
      const info = readSandboxInfo(dir);
      if (info && pidNamespaceOf(info.childPid) === info.pidNamespace)
        process.kill(info.childPid, 'SIGKILL');
      await sweepLegacy(dir);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    log.warn({ dir }, 'removed an Xvnc desktop no record accounts for');
    removed++;
  }
  return removed;
}

/** a run dir from before handles were recorded there: its pid file */
async function sweepLegacy(dir: string): Promise<void> {
  let pids: number[] = [];
  try {
    pids = fs
      .readFileSync(path.join(dir, 'pids'), 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
      .filter((n) => n > 1);
  } catch {
    /* no pid file: nothing was started */
  }
  // only signal processes that still use this desktop's directory (pids may be reused)
  const ours = pids.filter((pid) => {
    try {
      return (
        fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) ||
        fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes(dir)
      );
    } catch {
      return false;
    }
  });
  await stopGroups(ours.map((pid) => ({ pid })));
}
