/**
 * Postcopy for VMs that run as unprivileged accounts: the destination QEMU gets a
 * userfaultfd from /dev/userfaultfd through a small preloaded library (native/uffd-preload.c,
 * which says why), built here on first use with the host's C compiler and kept beside the
 * provider's data, keyed by the source's hash.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ProviderError } from '../types.js';

const execFileAsync = promisify(execFile);

const SOURCE = path.join(import.meta.dirname, '../../../native/uffd-preload.c');
export const UFFD_DEVICE = '/dev/userfaultfd';

/**
 * The preload library's path, built into `dir` when it is not there yet. Rejects with
 * QEMU_POSTCOPY_UNAVAILABLE when this host cannot give a VM a userfaultfd (no device:
 * Linux before 6.1) or the library cannot be built (no C compiler).
 */
export async function uffdPreload(dir: string): Promise<string> {
  await fs.access(UFFD_DEVICE).catch(() => {
    throw new ProviderError(
      'QEMU_POSTCOPY_UNAVAILABLE',
      `postcopy needs ${UFFD_DEVICE} (Linux 6.1 or later) to give the VM a userfaultfd`,
    );
  });
  const source = await fs.readFile(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const lib = path.join(dir, `uffd-preload-${hash}.so`);
  // QEMU loads it while root: only a file of this account that nobody else may change
  const st = await fs.stat(lib).catch(() => undefined);
  if (st && st.uid === process.getuid?.() && (st.mode & 0o022) === 0) return lib;
  await fs.rm(lib, { force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = `${lib}.${process.pid}.tmp`;
  try {
    await execFileAsync('cc', ['-shared', '-fPIC', '-O2', '-o', tmp, SOURCE, '-ldl'], {
      timeout: 60_000,
    });
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, lib);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw new ProviderError(
      'QEMU_POSTCOPY_UNAVAILABLE',
      `could not build the postcopy helper (${SOURCE}) with a C compiler: ${(err as Error).message}`,
    );
  }
  return lib;
}
