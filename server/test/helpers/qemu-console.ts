/**
 * A QEMU desktop's console for tests, over QMP: its screen as a PPM (screendump, parsePpm)
 * and keys on its emulated keyboard (sendKeys, typeText), without going through the gateway.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CONTROL_TIMEOUT_MS } from '../../src/providers/qemu/control.js';
import { parseHandle, type QemuHandle } from '../../src/providers/qemu/handle.js';
import { QmpClient, qmpExecute } from '../../src/providers/qemu/qmp-client.js';
import { ProviderError, type DesktopHandle } from '../../src/providers/types.js';

export type ScreendumpFormat = 'ppm' | 'png';

/**
 * Saves the VM's screen to `file` with QMP `screendump`. PPM works on every QEMU; PNG
 * needs QEMU >= 7.1 built with libpng (and 7.2 swaps red and blue in PNGs, QEMU issue
 * 1622), so PPM is the default. QEMU writes the file itself, possibly as the unprivileged
 * VM user: it writes into a private temporary directory that user owns, then the image
 * is moved to `file`.
 */
export async function screendump(
  handle: DesktopHandle,
  file: string,
  opts: { format?: ScreendumpFormat; timeoutMs?: number } = {},
): Promise<void> {
  const h = parseHandle(handle);
  const format = opts.format ?? 'ppm';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vdi-screendump-'));
  try {
    if (h.runAs) await fs.chown(dir, h.runAs.uid, h.runAs.gid);
    const tmp = path.join(dir, `screen.${format}`);
    const args: Record<string, unknown> = { filename: tmp };
    if (format !== 'ppm') args.format = format;
    const timeoutMs = opts.timeoutMs ?? CONTROL_TIMEOUT_MS;
    await qmpExecute(h.qmpPath, 'screendump', args, { timeoutMs, commandTimeoutMs: timeoutMs });
    const dest = path.resolve(file);
    try {
      await fs.rename(tmp, dest);
    } catch {
      await fs.copyFile(tmp, dest); // another file system
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export interface PpmImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, RGB, 8 bits per channel */
  rgb: Buffer;
}

/** Decodes a binary PPM (P6, maxval < 256) such as QEMU's screendump writes. */
export function parsePpm(data: Buffer): PpmImage {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < data.length && /\s/.test(String.fromCharCode(data[pos]!))) pos++;
      if (data[pos] !== 0x23) break; // '#' starts a comment up to the end of the line
      while (pos < data.length && data[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < data.length && !/\s/.test(String.fromCharCode(data[pos]!))) pos++;
    return data.subarray(start, pos).toString('latin1');
  };
  const magic = token();
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  pos++; // the single whitespace byte before the raster
  if (
    magic !== 'P6' ||
    !Number.isInteger(width) ||
    !Number.isInteger(height) ||
    width <= 0 ||
    height <= 0
  ) {
    throw new ProviderError('PPM_BAD', 'not a binary PPM (P6) image');
  }
  if (!(maxval > 0 && maxval < 256))
    throw new ProviderError('PPM_BAD', `unsupported PPM maxval ${maxval}`);
  const size = width * height * 3;
  if (data.length - pos < size) throw new ProviderError('PPM_BAD', 'PPM raster is truncated');
  return { width, height, rgb: data.subarray(pos, pos + size) };
}

/** QEMU key codes (QKeyCode) for the US layout; [code] or [shift, code]. */
const QCODES: Record<string, string[]> = (() => {
  const map: Record<string, string[]> = {
    ' ': ['spc'],
    '\n': ['ret'],
    '\t': ['tab'],
    '-': ['minus'],
    '=': ['equal'],
    '[': ['bracket_left'],
    ']': ['bracket_right'],
    '\\': ['backslash'],
    ';': ['semicolon'],
    "'": ['apostrophe'],
    '`': ['grave_accent'],
    ',': ['comma'],
    '.': ['dot'],
    '/': ['slash'],
  };
  const shifted: Record<string, string> = {
    '!': '1',
    '@': '2',
    '#': '3',
    $: '4',
    '%': '5',
    '^': '6',
    '&': '7',
    '*': '8',
    '(': '9',
    ')': '0',
    _: 'minus',
    '+': 'equal',
    '{': 'bracket_left',
    '}': 'bracket_right',
    '|': 'backslash',
    ':': 'semicolon',
    '"': 'apostrophe',
    '~': 'grave_accent',
    '<': 'comma',
    '>': 'dot',
    '?': 'slash',
  };
  for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789') map[c] = [c];
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') map[c] = ['shift', c.toLowerCase()];
  for (const [c, key] of Object.entries(shifted)) map[c] = ['shift', key];
  return map;
})();

/**
 * Presses one key chord on the VM's emulated keyboard, e.g. ['ctrl', 'alt', 'delete'].
 * Key names are QEMU QKeyCode values.
 */
export async function sendKeys(
  handle: DesktopHandle,
  keys: string[],
  holdTimeMs?: number,
): Promise<void> {
  await typeChords(parseHandle(handle), [keys], holdTimeMs);
}

/**
 * Types printable ASCII text (and \n, \t) as US-layout key presses. QEMU holds each key
 * `holdTimeMs` (its default is 100 ms) and queues them in order.
 */
export async function typeText(
  handle: DesktopHandle,
  text: string,
  holdTimeMs?: number,
): Promise<void> {
  const chords = [...text].map((c) => {
    const chord = QCODES[c];
    if (!chord)
      throw new ProviderError(
        'QEMU_UNTYPEABLE',
        `cannot type ${JSON.stringify(c)} on a US keyboard`,
      );
    return chord;
  });
  await typeChords(parseHandle(handle), chords, holdTimeMs);
}

async function typeChords(h: QemuHandle, chords: string[][], holdTimeMs?: number): Promise<void> {
  const qmp = await QmpClient.connect(h.qmpPath, { timeoutMs: CONTROL_TIMEOUT_MS });
  try {
    // send-key queues the presses in QEMU's input queue and answers at once, in order
    for (const chord of chords) {
      const args: Record<string, unknown> = {
        keys: chord.map((data) => ({ type: 'qcode', data })),
      };
      if (holdTimeMs !== undefined) args['hold-time'] = holdTimeMs;
      await qmp.execute('send-key', args);
    }
  } finally {
    qmp.close();
  }
}
