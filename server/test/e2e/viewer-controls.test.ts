/**
 * Issue 13 end to end, the viewer's controls on a real Xvnc desktop in real Chromium: the
 * desktop follows the window (fit), within the pool's range, not in "Scale" mode and never
 * for a shadowing administrator; the Keys menu's Ctrl+Alt+Del reaches the desktop as those
 * keysyms (xev); log off asks first; a short maximum session length shows the countdown
 * banner before the session ends.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import {
  deletePoolsAndClose,
  desktopHandle,
  expectNoXvncLeft,
  startXvncServer,
  xInvocation,
} from '../helpers/desktops.js';
import { ADMIN, Api, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';

const run = promisify(execFile);

/** Time a browser-side condition may take on a loaded machine. */
const UI_MS = 20_000;
/** The pool's resize range (its template's resizeRange). */
const RANGE = { minWidth: 640, minHeight: 480, maxWidth: 1600, maxHeight: 1000 };
/** The short pool's maximum session length and the warning lead, seconds. */
const MAX_SESSION_SEC = 24;
const WARNING_SEC = 12;

type ViewerWindow = Window & {
  __vdiViewer?: {
    framesDrawn: number;
    width: number;
    height: number;
    desktopId: string;
    keyboardLayout: string;
    zoom: number;
  };
};

describe("the viewer's controls on a real desktop", () => {
  const dirs = tempDirs('vctl');
  let ts: TestServer;
  let api: Api;
  let browser: Browser;
  const pools: string[] = [];
  const contexts: BrowserContext[] = [];
  const children: ChildProcess[] = [];
  let pool: Pool;
  let page: Page;
  let desktop: XvncHandle;
  let sessionId = '';

  const x = (cmd: string, args: string[]) => {
    const inv = xInvocation(desktop, [cmd, ...args]);
    return run(inv.file, inv.args, { env: inv.env, timeout: 10_000 }).then((r) => r.stdout);
  };
  /** the X screen's size as X clients see it */
  const geometry = async (): Promise<string> => {
    const out = await x('xdpyinfo', []);
    return /dimensions:\s+(\d+x\d+) pixels/.exec(out)?.[1] ?? '?';
  };
  const hook = (p: Page) =>
    p.evaluate(() => {
      const v = (window as ViewerWindow).__vdiViewer;
      return v ? { ...v } : undefined;
    });
  /** the desktop size "fit to window" asks for: the area under the toolbar, within RANGE */
  const fitFor = async (p: Page): Promise<string> => {
    const [w, h] = await p.evaluate(() => {
      const stage = document.querySelector<HTMLElement>('.viewer-stage')!;
      return [stage.clientWidth, stage.clientHeight];
    });
    let width = Math.min(Math.max(w, RANGE.minWidth), RANGE.maxWidth);
    if (width % 2 === 1 && width - 1 >= RANGE.minWidth) width -= 1;
    const height = Math.min(Math.max(h, RANGE.minHeight), RANGE.maxHeight);
    return `${width}x${height}`;
  };
  /** wait until the desktop has the size that fits page `p` */
  const fitted = async (p: Page, what: string): Promise<string> => {
    let want = '';
    await until(
      async () => (want = await fitFor(p)) === (await geometry()),
      UI_MS,
      `${what} (the desktop to fit the window)`,
    );
    return want;
  };
  const drawing = (p: Page) =>
    p.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as ViewerWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      { timeout: 60_000 },
    );

  /** The toolbar fades while the user works; the pointer near the top edge brings it back. */
  const revealToolbar = (p: Page) => p.mouse.move(12, 4);

  async function makePool(name: string, extra: Record<string, unknown> = {}): Promise<Pool> {
    const r = await api.post('/api/admin/pools', {
      name,
      provider: 'xvnc',
      assignment: 'floating',
      maxSize: 2,
      template: { width: 1024, height: 768, network: 'none', resizeRange: RANGE },
      ...extra,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const made = r.body;
    pools.push(made.id);
    const me = await api.get('/api/auth/me');
    const grant = await api.post('/api/admin/entitlements', {
      poolId: made.id,
      principalType: 'user',
      principalId: (me.body as { id: string }).id,
    });
    expect(grant.status, JSON.stringify(grant.body)).toBe(201);
    return made;
  }

  /** A signed-in page of its own, `width`×`height`. */
  async function newPage(width: number, height: number, hasTouch = false): Promise<Page> {
    const ctx = await browser.newContext({ viewport: { width, height }, hasTouch });
    contexts.push(ctx);
    const p = await ctx.newPage();
    await p.goto(ts.url + '/');
    await p.getByLabel('Username').fill(ADMIN.username);
    await p.getByLabel('Password').fill(ADMIN.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: UI_MS });
    return p;
  }

  /** Connect (or resume) to `poolName` from the desktop list and wait for the picture. */
  async function open(p: Page, poolName: string): Promise<string> {
    const card = p.getByRole('article').filter({ hasText: poolName });
    await openDesktop(p, card.getByRole('button', { name: /^(Connect|Resume)$/ }), 60_000);
    await drawing(p);
    return new URL(p.url()).pathname.split('/').pop()!;
  }

  beforeAll(async () => {
    ts = await startXvncServer(
      testConfig(
        {
          DEFAULT_POOL: 'false',
          BROKER_TICK_MS: '1000',
          SESSION_WARNING_SEC: String(WARNING_SEC),
        },
        dirs,
      ),
      170,
    );
    api = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
    pool = await makePool('Controls desk');
    browser = await launchChromium();
    page = await newPage(1100, 760);
    sessionId = await open(page, pool.name);
    const desktopId = (await hook(page))!.desktopId;
    desktop = await desktopHandle(ts, desktopId);
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    if (ts) await deletePoolsAndClose(ts, api, pools);
    expectNoXvncLeft(dirs);
  });

  it('resizes the desktop to the window, within the pool range, and not in Scale mode', async () => {
    // fit to window is the default: the desktop takes the page's size (on a wide window the
    // toolbar floats over it; on a narrower one it is a row of its own above it)
    expect(await fitted(page, 'at 1100x760')).toBe('1100x760');
    await until(async () => (await hook(page))?.width === 1100, UI_MS, 'the viewer at 1100 wide');
    await page.setViewportSize({ width: 900, height: 650 });
    const at900 = await fitted(page, 'at 900x650');
    expect(at900.startsWith('900x')).toBe(true);
    // smaller than the pool allows: clamped to its minimum, the picture scaled down
    await page.setViewportSize({ width: 500, height: 400 });
    expect(await fitted(page, 'at 500x400')).toBe('640x480');

    await page.setViewportSize({ width: 1000, height: 700 });
    expect(await fitted(page, 'at 1000x700')).toBe('1000x700');
    await page.getByLabel('Display').selectOption('scale');
    await page.setViewportSize({ width: 800, height: 600 });
    // scaled: the canvas shrinks to the window, the desktop keeps its size
    await page.waitForFunction(
      () => {
        const c = document.querySelector<HTMLCanvasElement>('#screen')!;
        const stage = c.parentElement!;
        const w = parseFloat(c.style.width);
        const h = parseFloat(c.style.height);
        return w < 1000 && w <= stage.clientWidth && h <= stage.clientHeight;
      },
      null,
      { timeout: UI_MS },
    );
    const deadline = Date.now() + 2500; // well past the resize debounce (400 ms)
    while (Date.now() < deadline) {
      expect(await geometry()).toBe('1000x700');
      await page.waitForTimeout(250);
    }
    // 1:1: the canvas at the desktop's own pixels
    await page.getByLabel('Display').selectOption('actual');
    await page.waitForFunction(
      () => document.querySelector<HTMLCanvasElement>('#screen')!.style.width === '1000px',
      null,
      { timeout: UI_MS },
    );
    await page.getByLabel('Display').selectOption('fit');
    await fitted(page, 'at 800x600');
    await revealToolbar(page);
    await page.getByRole('button', { name: 'Stats' }).hover();
    await page.screenshot({ path: screenshotPath('viewer-display.png') });
  });

  it("a shadowing administrator's window never resizes the owner's desktop", async () => {
    const before = await geometry();
    const shadow = await (await newPage(700, 500)).context().newPage();
    await shadow.goto(`${ts.url}/desktop/${sessionId}?shadow=1`);
    await drawing(shadow);
    const fit = shadow.getByLabel('Display').locator('option[value="fit"]');
    expect(await fit.isDisabled()).toBe(true);
    await expect
      .poll(() => shadow.locator('.tb-note').textContent())
      .toContain("keeps the owner's screen size");
    await shadow.setViewportSize({ width: 720, height: 520 });
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      expect(await geometry()).toBe(before);
      await shadow.waitForTimeout(250);
    }
    await shadow.close();
  });

  it("the Keys menu's Ctrl+Alt+Del reaches the desktop as those keysyms", async () => {
    // xev in the desktop, focused; line-buffered so its output can be read while it runs
    const inv = xInvocation(desktop, ['stdbuf', '-oL', 'xev', '-event', 'keyboard']);
    const xev = spawn(inv.file, inv.args, { env: inv.env, stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(xev);
    let out = '';
    xev.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await until(
      async () =>
        (await x('xdotool', ['search', '--name', 'Event Tester']).catch(() => '')).trim() || false,
      UI_MS,
      'the xev window',
    );
    await x('xdotool', ['search', '--name', 'Event Tester', 'windowfocus', '--sync']);
    // a narrow window: the menu must still fit in it
    await page.setViewportSize({ width: 800, height: 600 });
    await revealToolbar(page);
    await page.getByRole('button', { name: 'Keys' }).click();
    // the whole menu is in the window, not hanging off its left edge
    const menuBox = await page.getByRole('menu', { name: 'Special keys' }).boundingBox();
    const width = page.viewportSize()!.width;
    expect(menuBox).not.toBeNull();
    expect(menuBox!.x).toBeGreaterThanOrEqual(0);
    expect(menuBox!.x + menuBox!.width).toBeLessThanOrEqual(width);
    await page.screenshot({ path: screenshotPath('viewer-keys.png') });
    await page.getByRole('menuitem', { name: 'Ctrl+Alt+Del' }).click();
    await until(
      () => /keysym 0xffff, Delete/.test(out) && /KeyRelease[\s\S]*Control_L/.test(out),
      UI_MS,
      'xev to see Ctrl+Alt+Del',
    );
    const presses = [
      ...out.matchAll(/(KeyPress|KeyRelease) event[\s\S]*?keysym 0x[0-9a-f]+, (\w+)/g),
    ].map((m) => `${m[1] === 'KeyPress' ? '+' : '-'}${m[2]}`);
    expect(presses).toEqual(['+Control_L', '+Alt_L', '+Delete', '-Delete', '-Alt_L', '-Control_L']);
    xev.kill('SIGTERM');
  });

  it('with the German layout chosen, KeyZ types y and AltGr+Q types @ (saved for the user)', async () => {
    await revealToolbar(page);
    await page.getByLabel('Keyboard layout').selectOption('de');
    await until(
      async () =>
        ((await api.get('/api/me/preferences')).body as { keyboardLayout: string })
          .keyboardLayout === 'de',
      UI_MS,
      'the layout saved on the server',
    );
    await x('xdotool', ['search', '--class', 'xterm', 'windowfocus', '--sync']);
    await page.locator('#screen').focus();
    // "touch " is the same on both layouts; then the keys a US keyboard calls Z and Q
    await page.keyboard.type('touch ', { delay: 20 });
    await page.keyboard.press('KeyZ');
    await page.keyboard.down('AltRight');
    await page.keyboard.press('KeyQ');
    await page.keyboard.up('AltRight');
    await page.keyboard.press('Enter');
    await until(() => fs.existsSync(path.join(desktop.home, 'y@')), UI_MS, 'the file y@');
    // a new viewer of this user starts with the layout it saved
    const again = await newPage(800, 600);
    await again.goto(`${ts.url}/desktop/${sessionId}`);
    await again.waitForFunction(
      () => (window as ViewerWindow).__vdiViewer?.keyboardLayout === 'de',
      null,
      { timeout: UI_MS },
    );
    expect(await again.getByLabel('Keyboard layout').inputValue()).toBe('de');
    await again.close();
    await drawing(page);
  });

  it('touch: a tap clicks, a long press right-clicks, two fingers scroll, a pinch zooms the view', async () => {
    // xev's window at the top left of the desktop reports the buttons it gets
    const inv = xInvocation(desktop, [
      'stdbuf',
      '-oL',
      'xev',
      '-event',
      'button',
      '-geometry',
      '500x400+0+0',
    ]);
    const xev = spawn(inv.file, inv.args, { env: inv.env, stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(xev);
    let out = '';
    xev.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await until(
      async () =>
        (await x('xdotool', ['search', '--name', 'Event Tester']).catch(() => '')).trim() || false,
      UI_MS,
      'the xev window',
    );
    await x('xdotool', ['search', '--name', 'Event Tester', 'windowmove', '--sync', '0', '0']);
    await x('xdotool', ['search', '--name', 'Event Tester', 'windowraise']);
    const buttons = () =>
      [...out.matchAll(/ButtonPress event[\s\S]*?button (\d+)/g)].map((m) => Number(m[1]));

    const tp = await newPage(800, 600, true);
    await tp.goto(`${ts.url}/desktop/${sessionId}`);
    await drawing(tp);
    await fitted(tp, 'the touch viewer');
    const cdp = await tp.context().newCDPSession(tp);
    const touch = (
      type: 'touchStart' | 'touchMove' | 'touchEnd',
      points: Array<{ x: number; y: number }>,
    ) =>
      cdp.send('Input.dispatchTouchEvent', {
        type,
        touchPoints: points.map((p, id) => ({ ...p, id })),
      });

    await touch('touchStart', [{ x: 150, y: 200 }]);
    await touch('touchEnd', []);
    await until(() => buttons().includes(1), UI_MS, 'a left click from a tap');

    await touch('touchStart', [{ x: 160, y: 220 }]);
    await until(() => buttons().includes(3), UI_MS, 'a right click from a long press');
    await touch('touchEnd', []);

    await touch('touchStart', [
      { x: 150, y: 300 },
      { x: 250, y: 300 },
    ]);
    for (let dy = 20; dy <= 120; dy += 20)
      await touch('touchMove', [
        { x: 150, y: 300 - dy },
        { x: 250, y: 300 - dy },
      ]);
    await touch('touchEnd', []);
    await until(() => buttons().includes(5), UI_MS, 'wheel down from a two-finger drag');

    await tp.screenshot({ path: screenshotPath('viewer-narrow.png') });
    const before = buttons().length;
    await touch('touchStart', [
      { x: 300, y: 300 },
      { x: 400, y: 300 },
    ]);
    for (const spread of [60, 90, 120, 150])
      await touch('touchMove', [
        { x: 350 - spread, y: 300 },
        { x: 350 + spread, y: 300 },
      ]);
    await touch('touchEnd', []);
    await tp.waitForFunction(() => ((window as ViewerWindow).__vdiViewer?.zoom ?? 1) > 2, null, {
      timeout: UI_MS,
    });
    expect(buttons().length).toBe(before); // the pinch clicked nothing in the desktop
    await tp.screenshot({ path: screenshotPath('viewer-touch-zoom.png') });
    await tp.close();
    xev.kill('SIGTERM');
  });

  it('shows a countdown before the maximum session length logs the session off', async () => {
    const short = await makePool('Short desk', { maxSessionSec: MAX_SESSION_SEC });
    const p = await newPage(1000, 700);
    await open(p, short.name);
    const banner = p.locator('.banner-countdown');
    await banner.waitFor({ state: 'visible', timeout: MAX_SESSION_SEC * 1000 });
    expect(await banner.textContent()).toMatch(/logged off in 0:(0\d|1[0-2])/);
    await p.screenshot({ path: screenshotPath('viewer-countdown.png') });
    // then the server logs it off: the end screen
    await p.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: (MAX_SESSION_SEC + 15) * 1000,
    });
  });

  it('log off asks first; Cancel keeps the session', async () => {
    await revealToolbar(page);
    await page.getByRole('button', { name: 'Log off' }).click();
    const dialog = page.getByRole('dialog', { name: 'Log off?' });
    await dialog.waitFor({ timeout: UI_MS });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached', timeout: UI_MS });
    expect(await page.evaluate(() => document.body.dataset.viewer)).toBe('connected');
    await revealToolbar(page);
    await page.getByRole('button', { name: 'Log off' }).click();
    await page
      .getByRole('dialog', { name: 'Log off?' })
      .getByRole('button', { name: 'Log off' })
      .click();
    await page.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: UI_MS,
    });
  });
});

/** README screenshots (docs/img), written by the e2e run */
function screenshotPath(name: string): string {
  return new URL(`../../../docs/img/${name}`, import.meta.url).pathname;
}
