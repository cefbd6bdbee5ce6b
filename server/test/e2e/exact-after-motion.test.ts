/**
 * Issue 10: exact after motion, every time, and the cursor stays out of the canvas. A real
 * Xvnc desktop (a `vnc` pool on a TCP port on 127.0.0.1), the real server process and
 * Chromium. The bench's animation client (bench/x-clients/bench-x.c: photo-like pixels, every
 * pixel changes every frame, so the stream sends it as JPEG) runs and pauses; within a
 * second of the pause the viewer's canvas must equal the desktop's framebuffer (`xwd -root`)
 * pixel for pixel, in every repetition.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser.js';
import { ServerProcess, freePort } from '../helpers/process-server.js';
import { ADMIN, until } from '../helpers/server.js';
import { parseXwd } from '../helpers/xwd.js';

const run = promisify(execFile);
const BENCH_X = path.join(import.meta.dirname, '../../bench/x-clients/bench-x.c');
const SCREEN = { width: 1024, height: 768 };
/** the animated window: away from the pointer's start in the middle of the screen */
const ANIM = { x: 48, y: 40, w: 320, h: 240 };
const REPETITIONS = 5;
/**
 * The guarantee is 1 s; polling xwd and the canvas on a loaded 2-core machine adds to it.
 * Before the fix this took 1.5-2 s (the heat of the animation had to decay first).
 */
const EXACT_WITHIN_MS = 1000;
const MARGIN_MS = 400;

interface VdiWindow {
  __vdiViewer?: { framesDrawn: number };
  __vdiAudio?: { state: string; codec: string; packets: number };
}

describe('exact after motion (real Xvnc, server process, Chromium)', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-exact-'));
  const dataDir = path.join(work, 'data');
  const runDir = path.join(work, 'run');
  let xvnc: ChildProcess | undefined;
  let anim: ChildProcess | undefined;
  let animOut = '';
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let env: NodeJS.ProcessEnv = {};

  const framebuffer = async (): Promise<Buffer> => {
    const { stdout } = await run('xwd', ['-root', '-silent'], {
      env,
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    });
    return parseXwd(stdout).rgba;
  };
  const canvas = async (): Promise<Buffer> => {
    const url = await page.evaluate(() => document.querySelector('canvas')!.toDataURL('image/png'));
    const { data } = await sharp(Buffer.from(url.split(',')[1]!, 'base64'))
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return data;
  };
  /** pixels whose RGB differs between two RGBA pictures of the screen, inside `r` */
  const differing = (a: Buffer, b: Buffer, r = ANIM): number => {
    let n = 0;
    for (let y = r.y; y < r.y + r.h; y++)
      for (let x = r.x; x < r.x + r.w; x++) {
        const i = (y * SCREEN.width + x) * 4;
        if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
      }
    return n;
  };
  const framesDrawn = () =>
    page.evaluate(() => (window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0);

  /** run the animation until the viewer has drawn `frames` more frames, then pause it */
  const animate = async (frames: number): Promise<void> => {
    const before = await framesDrawn();
    const paused = animOut.split('paused').length;
    anim!.kill('SIGUSR2');
    await until(async () => (await framesDrawn()) >= before + frames, 30_000, 'animation frames');
    anim!.kill('SIGUSR1');
    await until(() => animOut.split('paused').length > paused, 10_000, 'the animation to pause');
  };
  /** ms from now until the canvas equals the framebuffer in `r` (throws after 10 s) */
  const msUntilExact = async (r = ANIM): Promise<{ ms: number; firstDiff: number }> => {
    const t0 = Date.now();
    let firstDiff = -1;
    for (;;) {
      const fb = await framebuffer();
      const diff = differing(await canvas(), fb, r);
      if (firstDiff < 0) firstDiff = diff;
      if (diff === 0) return { ms: Date.now() - t0, firstDiff };
      if (Date.now() - t0 > 10_000) throw new Error(`canvas still differs in ${diff} pixels`);
    }
  };

  beforeAll(async () => {
    fs.mkdirSync(dataDir);
    fs.mkdirSync(runDir);
    const benchX = path.join(work, 'bench-x');
    await run('gcc', ['-O2', '-o', benchX, BENCH_X, '-lX11', '-lXext', '-lm']);
    const rfbPort = await freePort();
    xvnc = spawn(
      'Xvnc',
      [
        ...['-geometry', `${SCREEN.width}x${SCREEN.height}`, '-depth', '24'],
        ...['-rfbport', String(rfbPort), '-localhost', '-interface', '127.0.0.1'],
        ...['-SecurityTypes', 'None', '-AlwaysShared', '-nolisten', 'tcp', '-UseBlacklist', '0'],
        ...['-displayfd', '3'],
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
    );
    const display = await new Promise<string>((resolve, reject) => {
      let got = '';
      (xvnc!.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('\n')) resolve(`:${got.trim()}`);
      });
      xvnc!.once('exit', (code) => reject(new Error(`Xvnc exited (${code})`)));
    });
    env = { ...process.env, DISPLAY: display, XAUTHORITY: '' };
    await run('xsetroot', ['-solid', '#2e5266'], { env });
    anim = spawn(
      benchX,
      ['anim', String(ANIM.x), String(ANIM.y), String(ANIM.w), String(ANIM.h), '30'],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    anim.stdout!.on('data', (d: Buffer) => (animOut += d.toString()));
    await until(() => animOut.includes('ready'), 15_000, 'the animation window');

    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_POOL: 'false',
      BROKER_TICK_MS: '60000',
    });
    await server.start();
    let cookie = '';
    const api = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
      const r = await fetch(server.url + p, {
        method,
        headers: {
          'content-type': 'application/json',
          'x-requested-with': 'vdi',
          ...(cookie ? { cookie } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const set = r.headers.get('set-cookie');
      if (set) cookie = set.split(';')[0]!;
      const text = await r.text();
      if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
      return (text ? JSON.parse(text) : undefined) as T;
    };
    const login = await api<{ user?: { id: string }; id?: string }>('POST', '/api/auth/login', {
      username: ADMIN.username,
      password: ADMIN.password,
    });
    const userId = login.user?.id ?? login.id ?? '';
    const pool = await api<{ id: string }>('POST', '/api/admin/pools', {
      name: 'exact',
      provider: 'vnc',
      template: { hosts: [{ host: '127.0.0.1', port: rfbPort, name: 'test Xvnc' }] },
      assignment: 'floating',
      maxSize: 1,
      disconnectedTimeoutSec: 0,
    });
    await api('POST', '/api/admin/entitlements', {
      poolId: pool.id,
      principalType: 'user',
      principalId: userId,
    });
    const { sessionId } = await api<{ sessionId: string }>('POST', `/api/pools/${pool.id}/connect`);
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const [name, value] = cookie.split('=');
    await context.addCookies([{ name: name!, value: value!, url: server.url }]);
    page = await context.newPage();
    await page.goto(`${server.url}/desktop/${sessionId}`);
    await page.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      { timeout: 60_000 },
    );
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    anim?.kill('SIGKILL');
    xvnc?.kill('SIGKILL');
    fs.rmSync(work, { recursive: true, force: true });
  });

  it(`the canvas equals the framebuffer within ${EXACT_WITHIN_MS} ms of the motion stopping, ${REPETITIONS} times out of ${REPETITIONS}`, async () => {
    const times: number[] = [];
    let lossyAtStop = 0;
    for (let i = 0; i < REPETITIONS; i++) {
      await animate(30 + i * 7); // vary where in the frame pacing the motion stops
      const { ms, firstDiff } = await msUntilExact();
      times.push(ms);
      if (firstDiff > 0) lossyAtStop++;
    }
    console.log(
      `exact after motion: ${times.join(', ')} ms; canvas still lossy at the first look in ${lossyAtStop} of ${REPETITIONS}`,
    );
    for (const ms of times) expect(ms).toBeLessThan(EXACT_WITHIN_MS + MARGIN_MS);
  });

  it('a desktop without sound (a plain VNC server): the viewer does not ask for it, and says why', async () => {
    // told at attach: no sound player is set up (its codec stays 'off'), so no request goes
    // to the gateway
    const audio = await page.evaluate(() => (window as unknown as VdiWindow).__vdiAudio);
    expect(audio).toMatchObject({
      state: 'failed: this desktop has no sound',
      codec: 'off',
      packets: 0,
    });
    // and the toolbar has no Sound button to open a panel of controls that do nothing
    expect(await page.getByRole('button', { name: 'Sound' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Clipboard' }).count()).toBe(1);
  });

  it('the pointer over the picture is not in the canvas (a CSS cursor, not pixels)', async () => {
    const at = { x: ANIM.x + ANIM.w / 2, y: ANIM.y + ANIM.h / 2 };
    /** where the desktop has the pointer (xdotool) */
    const pointer = async (): Promise<{ x: number; y: number }> => {
      const { stdout } = await run('xdotool', ['getmouselocation', '--shell'], { env });
      return { x: Number(/X=(\d+)/.exec(stdout)?.[1]), y: Number(/Y=(\d+)/.exec(stdout)?.[1]) };
    };
    /** move the browser's mouse and wait until the desktop's pointer has moved too */
    const moveTo = async (cx: number, cy: number) => {
      const before = await pointer();
      await page.mouse.move(cx, cy);
      let now = before;
      await until(
        async () => {
          now = await pointer();
          return now.x !== before.x || now.y !== before.y;
        },
        10_000,
        'the pointer to move on the desktop',
      );
      return now;
    };
    // how the page maps onto the desktop (the viewer scales and centres it; the user may
    // zoom): two probes give scale and offset per axis, whatever the layout
    const box = (await page.locator('canvas').boundingBox())!;
    const p1 = { x: box.x + box.width * 0.3, y: box.y + box.height * 0.3 };
    const p2 = { x: box.x + box.width * 0.6, y: box.y + box.height * 0.6 };
    const d1 = await moveTo(p1.x, p1.y);
    const d2 = await moveTo(p2.x, p2.y);
    const sx = (p2.x - p1.x) / (d2.x - d1.x);
    const sy = (p2.y - p1.y) / (d2.y - d1.y);
    await page.mouse.move(p1.x + (at.x + 0.5 - d1.x) * sx, p1.y + (at.y + 0.5 - d1.y) * sy);
    // the desktop has the pointer where the browser put it
    await until(
      async () => {
        const d = await pointer();
        return Math.abs(d.x - at.x) <= 1 && Math.abs(d.y - at.y) <= 1;
      },
      10_000,
      'the pointer over the picture on the desktop',
    );
    await animate(20);
    const { ms } = await msUntilExact(); // ANIM includes the pointer's square
    console.log(`exact with the pointer over the picture after ${ms} ms`);
    expect(ms).toBeLessThan(EXACT_WITHIN_MS + MARGIN_MS);
    // the desktop's cursor shape is the canvas's CSS cursor
    const cursor = await page.evaluate(
      () => getComputedStyle(document.querySelector('canvas')!).cursor,
    );
    expect(cursor).toMatch(/^url\("data:image\/png;base64,|^none$/);
  });
});
