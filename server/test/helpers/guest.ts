/**
 * The QEMU test guest (infra/guest/build-guest.sh) as tests through the server see it:
 * build it once (cached under <repo>/.cache/guest), tell when it has booted from a QMP
 * screendump, read files it wrote from a desktop's overlay offline, and type into it as a
 * browser would (X11 keysyms, US layout).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { XK } from '@vdi/shared';
import { parsePpm, screendump, type PpmImage } from './qemu-console.js';
import type { DesktopHandle } from '../../src/providers/types.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../../..');
export const GUEST_DIR = path.join(repoRoot, '.cache', 'guest');

/** VGA text mode: 80×25 cells of 9×16 pixels */
export const CELL_W = 9;
export const CELL_H = 16;
/** the guest's banner row is yellow on blue; VGA blue */
const BANNER_BLUE = '0,0,168';

export interface GuestTemplate {
  image: string;
  kernel: string;
  initrd: string;
  append: string;
  memoryMb: number;
  vcpus: number;
}

/** The lxd pool template whose desktops are the test guest (QEMU in a container, 256 MiB). */
export function lxdVmTemplate(g: GuestTemplate): { vm: Record<string, string | number> } {
  return {
    vm: { image: g.image, kernel: g.kernel, initrd: g.initrd, append: g.append, memoryMb: 256 },
  };
}

/** Builds (or finds cached) the test guest; returns the qemu pool template that boots it. */
export async function buildGuest(): Promise<GuestTemplate> {
  await run(path.join(repoRoot, 'infra/guest/build-guest.sh'), [GUEST_DIR], { timeout: 180_000 });
  return {
    image: path.join(GUEST_DIR, 'golden.qcow2'),
    kernel: path.join(GUEST_DIR, 'vmlinuz'),
    initrd: path.join(GUEST_DIR, 'initrd.img'),
    append: 'console=tty0 quiet',
    memoryMb: 256,
    vcpus: 1,
  };
}

/** what QEMU's auto acceleration picks here: KVM over hardware virtualisation, else TCG */
export async function expectedAccel(): Promise<'KVM' | 'TCG'> {
  const opens = await fs.open('/dev/kvm', 'r+').then(
    async (fh) => {
      await fh.close();
      return true;
    },
    () => false,
  );
  const modules = await fs.readdir('/sys/module').catch(() => [] as string[]);
  return opens && modules.some((m) => m === 'kvm_intel' || m === 'kvm_amd') ? 'KVM' : 'TCG';
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  // read-only, like everything else that touches the golden image
  for await (const chunk of createReadStream(file, { flags: 'r' })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Reads a file of the guest's /data from a qcow2 overlay without mounting anything;
 * undefined when it does not exist. The guest must have synced it.
 */
export async function readGuestFile(overlay: string, file: string): Promise<string | undefined> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-guest-read-'));
  const raw = path.join(dir, 'disk.raw');
  try {
    // -U: the running VM holds the image lock
    await run('qemu-img', ['convert', '-U', '-O', 'raw', overlay, raw]);
    const { stdout, stderr } = await run('debugfs', ['-R', `cat ${file}`, raw]);
    if (/not found/i.test(stderr)) return undefined;
    return stdout;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * How often the guest has mounted /data (the ext4 superblock's mount count), read offline:
 * it goes up by one per boot, which tells a reboot apart from a screen that only looks
 * the same. 0 while the desktop has no disk yet.
 */
export async function mountCount(overlay: string): Promise<number> {
  try {
    await fs.access(overlay);
  } catch {
    return 0;
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-guest-read-'));
  const raw = path.join(dir, 'disk.raw');
  try {
    await run('qemu-img', ['convert', '-U', '-O', 'raw', overlay, raw]);
    const { stdout } = await run('dumpe2fs', ['-h', raw]);
    return Number(/^Mount count:\s+(\d+)/m.exec(stdout)?.[1] ?? 0);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The VM's screen now, through QMP screendump. */
export async function screen(handle: DesktopHandle): Promise<PpmImage> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-guest-screen-'));
  try {
    const file = path.join(dir, 'screen.ppm');
    await screendump(handle, file);
    return parsePpm(await fs.readFile(file));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Lit (non-black) pixels in a block of text cells. */
export function litPixels(
  img: PpmImage,
  col0: number,
  row0: number,
  cols: number,
  rows: number,
): number {
  let lit = 0;
  for (let y = row0 * CELL_H; y < Math.min(img.height, (row0 + rows) * CELL_H); y++) {
    for (let x = col0 * CELL_W; x < Math.min(img.width, (col0 + cols) * CELL_W); x++) {
      const i = (y * img.width + x) * 3;
      if (img.rgb[i]! + img.rgb[i + 1]! + img.rgb[i + 2]! > 60) lit++;
    }
  }
  return lit;
}

/**
 * Has the guest booted to its shell? Its banner (yellow on blue, printed by /init once
 * /data is mounted) is on the top row, and below it a row holds just the prompt
 * `vdi-guest:/# ` (and perhaps the cursor). Keys typed earlier can be lost.
 */
export async function atPrompt(handle: DesktopHandle): Promise<boolean> {
  return promptShown(await screen(handle));
}

/** The same test on a picture of the screen however it was taken (QMP, or RFB). */
export function promptShown(img: PpmImage): boolean {
  if (img.width !== 720 || img.height !== 400) return false;
  const i = (8 * img.width + 2) * 3;
  if ([...img.rgb.subarray(i, i + 3)].join() !== BANNER_BLUE) return false;
  for (let row = 2; row < img.height / CELL_H; row++) {
    // 12 cells of "vdi-guest:/#", the space, the cursor; nothing after it
    if (litPixels(img, 0, row, 12, 1) > 100 && litPixels(img, 14, row, 80 - 14, 1) === 0)
      return true;
  }
  return false;
}

/** Shifted characters of the US layout (QEMU maps keysyms with its en-us keymap). */
const SHIFTED = new Set('~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ');

/**
 * The key events a browser viewer sends to type `text` (printable ASCII, \n): keysyms equal
 * the character code, Enter is Return, and shifted characters are wrapped in Shift_L as a
 * real keyboard does — QEMU turns keysyms into scancodes and needs the Shift press.
 */
export function keyEventsFor(text: string): Array<{ keysym: number; down: boolean }> {
  const out: Array<{ keysym: number; down: boolean }> = [];
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (c === '\n') {
      out.push({ keysym: XK.Return, down: true }, { keysym: XK.Return, down: false });
      continue;
    }
    if (code < 0x20 || code > 0x7e) throw new Error(`cannot type ${JSON.stringify(c)}`);
    const shift = SHIFTED.has(c);
    if (shift) out.push({ keysym: XK.Shift_L, down: true });
    out.push({ keysym: code, down: true }, { keysym: code, down: false });
    if (shift) out.push({ keysym: XK.Shift_L, down: false });
  }
  return out;
}
