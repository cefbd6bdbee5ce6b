import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { ProviderError } from '../types.js';

/**
 * A disk quota for a desktop's home where the host's file system has none to offer (ext4
 * mounted without quota options, as on this project's reference machine): the home is an ext4
 * file system of its own, in a sparse image file beside it, loop-mounted (nosuid, nodev) on
 * the home directory on the host. The desktop's writes end with ENOSPC at the pool's size;
 * the image takes only the space written. Dedicated desktops keep the image across log-offs.
 */

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
/** mkfs, mount and umount of a small image, ms */
const TOOL_TIMEOUT_MS = 60_000;

/** is `dir` a mount point on this host (its own line in mountinfo)? */
export function isMountPoint(dir: string): boolean {
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') === dir);
  } catch {
    return false;
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(cmd, args, { timeout: TOOL_TIMEOUT_MS });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new ProviderError(
      'HOME_DISK_FAILED',
      `${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`,
    );
  }
}

export class HomeDisks {
  /** Mounts (making or growing first when needed) a `sizeMb` file system on `home`. */
  async mount(image: string, home: string, sizeMb: number, log: Logger): Promise<void> {
    if (isMountPoint(home)) return; // still mounted from a run that did not end cleanly
    const bytes = sizeMb * MiB;
    if (!fs.existsSync(image)) {
      const tmp = `${image}.tmp`;
      fs.rmSync(tmp, { force: true });
      const fd = fs.openSync(tmp, 'w', 0o600);
      fs.ftruncateSync(fd, bytes); // sparse: takes only what the desktop writes
      fs.closeSync(fd);
      // no blocks reserved for root: the desktop's account is the only user of this disk
      await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'nodiscard', tmp]);
      fs.renameSync(tmp, image);
    } else if (fs.statSync(image).size < bytes) {
      // the pool's quota grew: grow the file system (shrinking would risk the user's data)
      fs.truncateSync(image, bytes);
      await run('e2fsck', ['-f', '-p', image]).catch(() => undefined);
      await run('resize2fs', [image]);
      log.info({ image, sizeMb }, 'grew a desktop home disk');
    }
    await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', image, home]);
  }

  /** Unmounts the home's file system, if it has one. */
  async unmount(home: string): Promise<void> {
    if (!isMountPoint(home)) return;
    await run('umount', [home]);
  }
}
