/**
 * Video mode end to end (issue 10): a real Xvnc desktop animating a region, the real server
 * with its ffmpeg encoder, real Chromium decoding with WebCodecs. The region arrives as video
 * and is painted; when the motion stops the canvas equals the desktop's framebuffer (xwd).
 * Then the same with a browser whose decoder fails: the viewer reports it and frames keep
 * arriving as images.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { alive, killLeftDesktop } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, Api, until } from '../helpers/server.js';
import { parseXwd } from '../helpers/xwd.js';

const run = promisify(execFile);

interface VdiWindow {
  __vdiViewer?: {
    framesDrawn: number;
    videoCodecs: string[];
    videoPainted: number;
    videoErrors: number;
    sessionId: string;
  };
}

/**
 * Half the side of the box around the pointer left out of the comparison, px: the cursor is
 * not the video's business (issue 10 has its own item for it; the bench leaves it out too).
 */
const CURSOR_BOX_PX = 24;

/** A still screen sends nothing: this long without a frame, ms (the bench waits for the same). */
const QUIET_MS = 3000;

/** the animated window: photo-like content at 30 fps (bench/x-clients/bench-x.c) */
const ANIM = { x: 560, y: 360, w: 320, h: 240 };

describe('video mode in a real browser', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-video-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vvid-'));
  const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vvid-x-'));
  let server: ServerProcess;
  let browser: Browser;
  let handle: XvncHandle | undefined;
  let anim: ChildProcess | undefined;
  /** the session the viewers attach to: logged off at the end, so its desktop goes too */
  let sessionId = '';
  const pages: Page[] = [];

  const desktopHandle = (): XvncHandle | undefined => {
    const row = readStore(
      dataDir,
      (db) =>
        db
          .prepare("select handle from desktops where handle is not null and state <> 'stopped'")
          .get() as { handle: string } | undefined,
    );
    return row ? (JSON.parse(row.handle) as XvncHandle) : undefined;
  };

  /** a command run inside the desktop, as its own account (X shared memory included) */
  const inDesktop = (h: XvncHandle, argv: string[]): { file: string; args: string[] } => {
    const xEnv = h.xEnv ?? { DISPLAY: `:${h.display}`, XAUTHORITY: '' };
    const env = ['env', `DISPLAY=${xEnv.DISPLAY}`, `XAUTHORITY=${xEnv.XAUTHORITY}`, ...argv];
    if (h.isolation !== 'sandbox' || !h.account) return { file: env[0]!, args: env.slice(1) };
    const { uid, gid } = h.account;
    return {
      file: 'nsenter',
      args: [
        '-t',
        String(h.xvncPid),
        '-m',
        '-n',
        '-i',
        '-S',
        String(uid),
        '-G',
        String(gid),
        '--',
        ...env,
      ],
    };
  };

  /** the desktop's framebuffer, RGBA */
  const framebuffer = async (h: XvncHandle) => {
    const inv = inDesktop(h, ['xwd', '-root', '-silent']);
    const { stdout } = await run(inv.file, inv.args, {
      encoding: 'buffer',
      maxBuffer: 64 << 20,
      timeout: 20_000,
    });
    return parseXwd(stdout);
  };

  /** where the desktop's pointer is */
  const pointer = async (h: XvncHandle) => {
    const inv = inDesktop(h, ['xdotool', 'getmouselocation', '--shell']);
    const { stdout } = await run(inv.file, inv.args, { timeout: 10_000 });
    const v: Record<string, string> = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    return { x: Number(v.X), y: Number(v.Y) };
  };

  /** the viewer's canvas, RGBA (through a lossless PNG) */
  const canvas = async (p: Page) => {
    const url = await p.evaluate(() =>
      document.querySelector<HTMLCanvasElement>('#screen')!.toDataURL('image/png'),
    );
    const { data, info } = await sharp(Buffer.from(url.split(',')[1]!, 'base64'))
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, rgba: data };
  };

  /** where the canvas and the framebuffer differ, for the failure message */
  let where = '';
  /** pixels that differ between the canvas and the framebuffer */
  const differing = async (p: Page, h: XvncHandle): Promise<number> => {
    const [fb, cv, ptr] = await Promise.all([framebuffer(h), canvas(p), pointer(h)]);
    if (fb.width !== cv.width || fb.height !== cv.height) return fb.width * fb.height;
    let n = 0;
    const box = { x0: Infinity, y0: Infinity, x1: -1, y1: -1 };
    const nearPointer = (x: number, y: number) =>
      Math.abs(x - ptr.x) < CURSOR_BOX_PX && Math.abs(y - ptr.y) < CURSOR_BOX_PX;
    for (let i = 0; i < fb.rgba.length; i += 4)
      if (
        !nearPointer((i / 4) % fb.width, Math.floor(i / 4 / fb.width)) &&
        (fb.rgba[i] !== cv.rgba[i] ||
          fb.rgba[i + 1] !== cv.rgba[i + 1] ||
          fb.rgba[i + 2] !== cv.rgba[i + 2])
      ) {
        n++;
        const x = (i / 4) % fb.width;
        const y = Math.floor(i / 4 / fb.width);
        box.x0 = Math.min(box.x0, x);
        box.y0 = Math.min(box.y0, y);
        box.x1 = Math.max(box.x1, x);
        box.y1 = Math.max(box.y1, y);
      }
    where = n ? `in (${box.x0},${box.y0})–(${box.x1},${box.y1})` : '';
    return n;
  };

  const videoLog = () =>
    server.output
      .split('\n')
      .filter((l) => /video|viewer|frame/.test(l))
      .slice(-40)
      .join('\n');

  const hooks = (p: Page) => p.evaluate(() => (window as unknown as VdiWindow).__vdiViewer!);

  /** resolves once the viewer has drawn no frame for QUIET_MS */
  async function quiet(p: Page): Promise<void> {
    let last = { frames: -1, at: Date.now() };
    await until(
      async () => {
        const frames = (await hooks(p)).framesDrawn;
        if (frames !== last.frames) last = { frames, at: Date.now() };
        return Date.now() - last.at >= QUIET_MS;
      },
      20_000,
      `${QUIET_MS} ms without frames`,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${videoLog()}`);
    });
  }

  async function openViewer(p: Page): Promise<void> {
    await p.goto(server.url + '/');
    await p.getByLabel('Username').fill(ADMIN.username);
    await p.getByLabel('Password').fill(ADMIN.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    // a session already running shows Resume
    await openDesktop(p, p.getByRole('button', { name: /^(Connect|Resume)$/ }).first());
    await p.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      { timeout: 60_000 },
    );
    sessionId = (await hooks(p)).sessionId;
  }

  /** start the animation; resolves once its window is on screen and moving */
  async function startAnimation(h: XvncHandle): Promise<ChildProcess> {
    const bin = path.join(h.home, 'bench-x');
    fs.copyFileSync(path.join(buildDir, 'bench-x'), bin);
    fs.chmodSync(bin, 0o755);
    const inside = h.isolation === 'sandbox' && h.account ? `/home/${h.account.name}/bench-x` : bin;
    const inv = inDesktop(h, [inside, 'anim', ...[ANIM.x, ANIM.y, ANIM.w, ANIM.h, 30].map(String)]);
    const child = spawn(inv.file, inv.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await until(
      () => {
        if (child.exitCode !== null) throw new Error(`bench-x exited: ${out}`);
        return /^ready /m.test(out);
      },
      20_000,
      'animation window',
    );
    child.kill('SIGUSR2'); // start moving
    return child;
  }

  /** pause the animation (the window stays, still) */
  function pauseAnimation(child: ChildProcess): void {
    child.kill('SIGUSR1');
  }

  async function stopAnimation(): Promise<void> {
    const c = anim;
    anim = undefined;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await gone;
  }

  /** video encoders: the server's ffmpeg children running x264 (sound has an ffmpeg too) */
  const encoders = async (): Promise<number> => {
    const r = await run('pgrep', ['-P', String(server.child!.pid), '-f', 'ffmpeg .*libx264']).catch(
      () => ({ stdout: '' }),
    );
    return r.stdout.trim() ? r.stdout.trim().split('\n').length : 0;
  };

  beforeAll(async () => {
    await run('gcc', [
      ...['-O2', '-o', path.join(buildDir, 'bench-x')],
      path.join(import.meta.dirname, '../../bench/x-clients/bench-x.c'),
      ...['-lX11', '-lXext', '-lm'],
    ]);
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_GEOMETRY: '1024x768',
      BROKER_TICK_MS: '1000',
    });
    await server.start();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await stopAnimation();
    await browser?.close();
    const h = desktopHandle() ?? handle;
    // desktops outlive the server: log the session off so the broker stops its desktop
    if (sessionId && server) {
      const a = await new Api(server.url).login(ADMIN.username, ADMIN.password);
      await a.post(`/api/sessions/${sessionId}/logoff`);
      if (h)
        await until(() => !alive(h.xvncPid), 30_000, 'the desktop stopped').catch(() => undefined);
    }
    await server?.stop();
    // and if that failed: the desktop's processes themselves (in a sandbox they lead no group)
    await killLeftDesktop(h);
    fs.rmSync(buildDir, { recursive: true, force: true });
  });

  it('sends a moving region as video, paints it, and is exact once it stops', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    pages.push(page);
    await openViewer(page);
    expect((await hooks(page)).videoCodecs).toEqual(['avc1']);
    handle = desktopHandle()!;
    anim = await startAnimation(handle);
    // video: pictures decoded by WebCodecs and drawn, with an encoder running on the server
    await until(
      async () => (await hooks(page)).videoPainted >= 30,
      60_000,
      'video pictures painted',
    );
    expect(await encoders()).toBe(1);
    expect((await hooks(page)).videoErrors).toBe(0);

    pauseAnimation(anim);
    // still: the region ends (its encoder goes) and the canvas is the framebuffer again
    await until(async () => (await encoders()) === 0, 10_000, 'encoder stopped');
    let diff = -1;
    await until(
      async () => (diff = await differing(page, handle!)) === 0,
      10_000,
      'canvas equal to the framebuffer',
    ).catch((e: unknown) => {
      throw new Error(`${diff} pixels still differ ${where}: ${String(e)}\n${videoLog()}`);
    });

    // and then nothing more is sent: no frame for 3 s
    await quiet(page);

    // moving again starts a new region; leaving the page ends its encoder
    anim.kill('SIGUSR2');
    await until(async () => (await encoders()) === 1, 30_000, 'encoder started again');
    await page.close();
    await until(async () => (await encoders()) === 0, 10_000, 'encoder gone with the viewer');
    pauseAnimation(anim);
  });

  it('falls back to images when the browser decoder fails, and stays exact', async () => {
    for (const p of pages.splice(0)) await p.close();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    pages.push(page);
    // a decoder that configures fine and then fails on its first chunk
    await page.addInitScript(() => {
      const Real = window.VideoDecoder;
      if (typeof Real !== 'function') return;
      window.VideoDecoder = class extends Real {
        private readonly fail: (e: DOMException) => void;
        constructor(init: VideoDecoderInit) {
          super(init);
          this.fail = init.error;
        }
        override decode(): void {
          setTimeout(() => this.fail(new DOMException('forced by the test', 'EncodingError')), 0);
        }
      };
    });
    await openViewer(page);
    expect((await hooks(page)).videoCodecs).toEqual(['avc1']);
    anim!.kill('SIGUSR2');
    await until(
      async () => (await hooks(page)).videoErrors === 1,
      60_000,
      'decoder failure reported',
    );
    // the server gave video up for this viewer: its encoder is gone, images keep coming
    await until(
      async () => (await encoders()) === 0,
      10_000,
      'encoder stopped after the failure',
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${videoLog()}`);
    });
    const drawn = (await hooks(page)).framesDrawn;
    await until(async () => (await hooks(page)).framesDrawn >= drawn + 30, 30_000, 'image frames');
    expect(await encoders()).toBe(0);
    expect((await hooks(page)).videoPainted).toBe(0);
    expect(server.output).toMatch(/video decode failed in the browser/);

    pauseAnimation(anim!);
    let diff = -1;
    await until(
      async () => (diff = await differing(page, handle!)) === 0,
      10_000,
      'canvas equal to the framebuffer',
    ).catch((e: unknown) => {
      throw new Error(`${diff} pixels still differ ${where}: ${String(e)}\n${videoLog()}`);
    });
    await page.close();
  });
});
