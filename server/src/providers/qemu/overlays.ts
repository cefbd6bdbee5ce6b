/**
 * Each desktop's disk: a qcow2 overlay (a linked clone) on the pool's golden image, which
 * QEMU only ever opens read-only. A dedicated desktop keeps its overlay across log-offs. The
 * pool's image files are checked before a VM starts on them.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { ProviderError } from '../types.js';

const execFileAsync = promisify(execFile);

const QEMU_IMG_TIMEOUT_MS = 60_000;

export class Overlays {
  constructor(private readonly qemuImgBinary: string) {}

  /**
   * The overlay at `overlayPath` for a VM booting `goldenPath`: a kept one when the desktop
   * is persistent and has one (checked to be based on this image), else a fresh one. True
   * when it made a fresh overlay, false when it reused a kept one.
   */
  async prepare(
    persistent: boolean,
    goldenPath: string,
    overlayPath: string,
    log: Logger,
  ): Promise<boolean> {
    if (persistent && (await exists(overlayPath))) {
      const info = await this.imageInfo(overlayPath);
      const backing = info['full-backing-filename'] ?? info['backing-filename'];
      if (backing !== goldenPath) {
        throw new ProviderError(
          'QEMU_OVERLAY_MISMATCH',
          `kept disk ${overlayPath} is based on ${String(backing)}, not on the pool's image ${goldenPath}; remove it to start afresh`,
        );
      }
      log.info({ overlayPath }, 'reusing the kept disk of a dedicated desktop');
      return false;
    }
    const tmp = `${overlayPath}.tmp`;
    await fs.rm(tmp, { force: true });
    await this.qemuImg(['create', '-q', '-f', 'qcow2', '-b', goldenPath, '-F', 'qcow2', tmp]);
    await fs.chmod(tmp, 0o600);
    // rename: a crash never leaves a half-made overlay under the real name
    await fs.rename(tmp, overlayPath);
    return true;
  }

  private async imageInfo(file: string): Promise<Record<string, unknown>> {
    // -U: read even while a QEMU holds the image's lock
    const stdout = await this.qemuImg(['info', '-U', '--output=json', file]);
    return JSON.parse(stdout) as Record<string, unknown>;
  }

  private async qemuImg(args: string[]): Promise<string> {
    try {
      const { stdout } = await execFileAsync(this.qemuImgBinary, args, {
        timeout: QEMU_IMG_TIMEOUT_MS,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new ProviderError(
        'QEMU_IMG_FAILED',
        `qemu-img ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`,
      );
    }
  }
}

/** The pool's image files must be readable; a golden image others may write is warned about. */
export async function checkImages(
  goldenPath: string,
  kernel: string | undefined,
  initrd: string | undefined,
  log: Logger,
): Promise<void> {
  for (const [what, file] of [
    ['golden image', goldenPath],
    ['kernel', kernel],
    ['initrd', initrd],
  ] as const) {
    if (file === undefined) continue;
    try {
      await fs.access(file, fsConstants.R_OK);
    } catch {
      throw new ProviderError(
        'QEMU_IMAGE_MISSING',
        `${what} ${file} does not exist or is not readable`,
      );
    }
  }
  const goldenStat = await fs.stat(goldenPath);
  if ((goldenStat.mode & 0o022) !== 0) {
    log.warn(
      { goldenPath },
      'golden image is writable by group or others; make it read-only (chmod 0444)',
    );
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}
