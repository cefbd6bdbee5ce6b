/**
 * ZRLE and Tight against a real TigerVNC Xvnc: the same screen (a plaid root window, an
 * xterm with coloured text, a noisy true-colour image) reaches a raw client, a ZRLE client
 * and a Tight client (the endpoint marked remote), and each decoded framebuffer equals
 * `xwd` of the display pixel for pixel, before and after the screen changes. Tight is
 * lossless here (no JPEG quality level is asked for). The bytes each client read for the
 * same screen are printed, for the figures in the README's RFB section.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RfbClient } from '../../src/rfb/client.js';
import type { RemoteEncoding } from '../../src/rfb/client-api.js';
import { FramebufferModel } from '../unit/rfb/helpers/sinks.js';

const run = promisify(execFile);
const WAIT_MS = 20_000;
const WIDTH = 640;
const HEIGHT = 480;

async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The screen as `xwd -root` sees it: R, G, B, X bytes a pixel, X = 0. */
async function xwdScreen(env: NodeJS.ProcessEnv): Promise<Buffer> {
  const { stdout } = await run('xwd', ['-root', '-silent'], {
    env,
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  return comparable(parseXwd(stdout));
}

/** An XWD (version 7) ZPixmap of 24/32 bits a pixel, to R, G, B, X. */
function parseXwd(file: Buffer): Buffer {
  const field = (i: number): number => file.readUInt32BE(i * 4);
  const headerSize = field(0);
  const [width, height] = [field(4), field(5)];
  const byteOrder = field(7); // 0: LSB first
  const bitsPerPixel = field(11);
  const bytesPerLine = field(12);
  const masks = [field(14), field(15), field(16)];
  const ncolors = field(19);
  if (field(1) !== 7 || field(2) !== 2 || bitsPerPixel !== 32)
    throw new Error('xwd: expected a version 7, 32 bpp ZPixmap');
  expect([width, height]).toEqual([WIDTH, HEIGHT]);
  const data = headerSize + ncolors * 12;
  const out = Buffer.alloc(width * height * 4);
  const shifts = masks.map((m) => Math.log2(m & -m));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = data + y * bytesPerLine + x * 4;
      const px = byteOrder === 0 ? file.readUInt32LE(at) : file.readUInt32BE(at);
      for (let c = 0; c < 3; c++)
        out[(y * width + x) * 4 + c] =
          ((px & (masks[c] as number)) >>> (shifts[c] as number)) & 0xff;
    }
  }
  return out;
}

/**
 * The pixel under the pointer: Xvnc keeps a software cursor there (an empty 1×1 one here)
 * and its framebuffer can keep that pixel's old colour when the root repaints beneath it,
 * while xwd shows the new one; the raw client sees the same. It is the only pixel left out.
 */
const POINTER = { x: WIDTH - 1, y: HEIGHT - 1 };

/** Pixels with X cleared and the pointer's pixel blanked, to compare with xwd. */
function comparable(pixels: Buffer): Buffer {
  const out = Buffer.from(pixels);
  for (let i = 3; i < out.length; i += 4) out[i] = 0;
  out.fill(0, (POINTER.y * WIDTH + POINTER.x) * 4, (POINTER.y * WIDTH + POINTER.x + 1) * 4);
  return out;
}

function differingPixels(a: Buffer, b: Buffer): string {
  let n = 0;
  const first: string[] = [];
  for (let i = 0; i < a.length; i += 4)
    if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) {
      n++;
      if (first.length < 5)
        first.push(
          `(${(i / 4) % WIDTH},${Math.floor(i / 4 / WIDTH)}) ${[...a.subarray(i, i + 3)].join()} vs ${[...b.subarray(i, i + 3)].join()}`,
        );
    }
  return `${n}, first ${first.join('; ')}`;
}

/**
 * A 200×150 true-colour XWD of gradients with noise (about 30 000 colours), for xwud to
 * show: photo-like content, where ZRLE needs raw tiles and Tight its full-colour path.
 */
function noiseImageXwd(): Buffer {
  const [w, h] = [200, 150];
  const name = Buffer.from('noise\0');
  const header = Buffer.alloc(100);
  // header size, version, ZPixmap, depth, size, x offset, LSB first, unit, bit order, pad,
  // bpp, bytes a line, TrueColor, masks, bits per rgb, colormap entries, colours, window
  const fields = [100 + name.length, 7, 2, 24, w, h, 0, 0, 32, 0, 32, 32, w * 4, 4];
  fields.push(0xff0000, 0xff00, 0xff, 8, 256, 0, w, h, 0, 0, 0);
  fields.forEach((v, i) => header.writeUInt32BE(v, i * 4));
  const pixels = Buffer.alloc(w * h * 4);
  let seed = 1;
  const noise = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed & 0xff;
  };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      pixels[i] = ((x + y) * 2 + (noise() % 8)) & 0xff; // blue (LSB first)
      pixels[i + 1] = Math.floor((y * 255) / h);
      pixels[i + 2] = (Math.floor((x * 255) / w) + (noise() % 16)) & 0xff;
    }
  }
  return Buffer.concat([header, name, pixels]);
}

function distinctColours(pixels: Buffer): number {
  const seen = new Set<number>();
  for (let i = 0; i < pixels.length; i += 4) seen.add(pixels.readUInt32LE(i));
  return seen.size;
}

const dir = mkdtempSync(path.join(tmpdir(), 'rfb-codecs-'));
const socketPath = path.join(dir, 'x.sock');
let xvnc: ChildProcess | undefined;
let env: NodeJS.ProcessEnv = {};
const children: ChildProcess[] = [];
const clients: RfbClient[] = [];

async function startXvnc(): Promise<void> {
  const proc = spawn(
    '/usr/bin/Xvnc',
    [
      '-displayfd',
      '3',
      '-geometry',
      `${WIDTH}x${HEIGHT}`,
      '-depth',
      '24',
      '-rfbunixpath',
      socketPath,
      '-rfbport',
      '-1',
      '-nolisten',
      'tcp',
      '-SecurityTypes',
      'None',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
  );
  xvnc = proc;
  let log = '';
  let displayOut = '';
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  (proc.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (displayOut += d.toString()));
  await waitFor(
    () => proc.exitCode !== null || (/^\d+\n/.test(displayOut) && existsSync(socketPath)),
    'Xvnc to listen',
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${log}`);
  });
  if (proc.exitCode !== null) throw new Error(`Xvnc exited at start:\n${log}`);
  env = { ...process.env, DISPLAY: `:${Number.parseInt(displayOut, 10)}` };
}

/** Draw and wait until two xwd's in a row agree (the xterm has painted). */
async function stableScreen(): Promise<Buffer> {
  let last = await xwdScreen(env);
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await xwdScreen(env);
    if (now.equals(last)) return now;
    last = now;
  }
}

function connect(encodings: RemoteEncoding[] | 'raw') {
  const fb = new FramebufferModel();
  const client = new RfbClient({
    endpoint:
      encodings === 'raw'
        ? { kind: 'unix', path: socketPath }
        : { kind: 'unix', path: socketPath, remote: true },
    sink: fb,
    keepaliveMs: 0,
    ...(encodings === 'raw' ? {} : { remoteEncodings: encodings }),
  });
  clients.push(client);
  const closes: unknown[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('error', () => undefined);
  return { client, fb, closes, ready: client.connect() };
}

async function matches(fb: FramebufferModel, screen: Buffer, what: string): Promise<void> {
  await waitFor(() => comparable(fb.data).equals(screen), what).catch((err: unknown) => {
    throw new Error(
      `${String(err)}: ${differingPixels(comparable(fb.data), screen)} pixels differ`,
    );
  });
}

beforeAll(async () => {
  await startXvnc();
  // xwd sees Xvnc's software cursor, which the RFB framebuffer leaves out (it is sent as the
  // Cursor pseudo-encoding): give the root an empty cursor and put the pointer over the root
  const empty = path.join(dir, 'empty.xbm');
  writeFileSync(
    empty,
    [
      '#define empty_width 1',
      '#define empty_height 1',
      '#define empty_x_hot 0',
      '#define empty_y_hot 0',
      'static unsigned char empty_bits[] = {',
      '   0x00};',
      '',
    ].join('\n'),
  );
  await run('xsetroot', ['-cursor', empty, empty], { env });
  await run('xdotool', ['mousemove', String(POINTER.x), String(POINTER.y)], { env });
  // a plaid root (two colours, small tiles: palettes and runs) and an xterm of coloured text
  await run('xsetroot', ['-mod', '5', '7', '-fg', '#ff8000', '-bg', '#203040'], { env });
  const text =
    'printf "\\033[31mred \\033[32mgreen \\033[34mblue \\033[1;33mbold yellow\\033[0m\\n"; ' +
    'i=0; while [ $i -lt 16 ]; do printf "\\033[48;5;$((i*16))m  \\033[38;5;$((i*16+7))m$i text \\033[0m"; i=$((i+1)); done; echo; ' +
    'ls -l /usr/bin | head -14; sleep 600';
  const term = spawn('xterm', ['-geometry', '60x24+10+10', '-e', 'sh', '-c', text], {
    env,
    stdio: 'ignore',
  });
  children.push(term);
  const image = path.join(dir, 'noise.xwd');
  writeFileSync(image, noiseImageXwd());
  const viewer = spawn('xwud', ['-in', image, '-geometry', '+430+320'], { env, stdio: 'ignore' });
  children.push(viewer);
  // the xterm's coloured text and the image are on screen, not only the two-colour root
  await waitFor(
    async () => distinctColours(await xwdScreen(env)) > 20_000,
    'the xterm and the image to paint',
  );
});

afterAll(async () => {
  for (const c of clients) c.close('test over');
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  if (xvnc && xvnc.exitCode === null) {
    const gone = new Promise((r) => xvnc?.once('exit', r));
    xvnc.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (xvnc.exitCode === null) xvnc.kill('SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('ZRLE and Tight from a real Xvnc equal xwd pixel for pixel', () => {
  const bytes: Record<string, number> = {};
  const changes: Record<string, number> = {};

  it.each([
    ['raw', 'raw' as const],
    ['zrle', ['zrle'] as RemoteEncoding[]],
    ['tight', ['tight'] as RemoteEncoding[]],
  ])('%s: the first frame, then a changed screen', async (name, encodings) => {
    const screen = await stableScreen();
    expect(distinctColours(screen)).toBeGreaterThan(20_000);
    const c = connect(encodings);
    await c.ready;
    await matches(c.fb, screen, `${name} frame equal to xwd`);
    bytes[name] = c.client.bytesReceived;

    await run('xsetroot', ['-mod', '3', '4', '-fg', '#10e0a0', '-bg', '#600060'], { env });
    const changed = await stableScreen();
    expect(changed.equals(screen)).toBe(false);
    await matches(c.fb, changed, `${name} changed frame equal to xwd`);
    // the repaint of the root around the xterm and the image, bytes
    changes[name] = c.client.bytesReceived - bytes[name];
    expect(c.closes).toEqual([]);
    c.client.close('done');
    // back to the first screen for the next client
    await run('xsetroot', ['-mod', '5', '7', '-fg', '#ff8000', '-bg', '#203040'], { env });
  });

  it('the compressed encodings read far fewer bytes than raw for the same screen', () => {
    console.log(`bytes for one ${WIDTH}x${HEIGHT} screen: ${JSON.stringify(bytes)}`);
    console.log(`bytes for the changed root: ${JSON.stringify(changes)}`);
    const raw = bytes.raw as number;
    expect(raw).toBeGreaterThan(WIDTH * HEIGHT * 4);
    expect(bytes.zrle).toBeLessThan(raw / 4);
    expect(bytes.tight).toBeLessThan(raw / 4);
  });
});
