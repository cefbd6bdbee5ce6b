/**
 * Issue 2 end to end: a real Xvnc desktop in real Chromium. Sign in through the form,
 * Connect, type into the desktop's terminal, watch pixels change, close the tab and come
 * back to the same desktop, restart the server and come back again, log off.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { alive, homeInside, xInvocation } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, until } from '../helpers/server.js';

const run = promisify(execFile);

/** the viewer's test hook (client/src/viewer/test-hooks.ts) */
interface VdiWindow {
  __vdiViewer?: { framesDrawn: number; width: number; height: number; desktopId?: string };
}

describe('a real desktop in the browser', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-e2e-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 've2e-'));
  let server: ServerProcess;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let desktopId = '';
  let first: XvncHandle;
  const token = randomBytes(6).toString('hex');

  const desktop = (): { state: string; handle: XvncHandle | null } | undefined => {
    const row = readStore(
      dataDir,
      (db) =>
        db.prepare('select state, handle from desktops where id = ?').get(desktopId) as
          { state: string; handle: string | null } | undefined,
    );
    return (
      row && {
        state: row.state,
        handle: row.handle ? (JSON.parse(row.handle) as XvncHandle) : null,
      }
    );
  };
  /** the desktop of a session, from the store */
  const desktopOf = (sessionId: string): string =>
    readStore(
      dataDir,
      (db) =>
        (
          db.prepare('select desktop_id from sessions where id = ?').get(sessionId) as {
            desktop_id: string;
          }
        ).desktop_id,
    );
  const x = (cmd: string, args: string[]) => {
    const inv = xInvocation(first, [cmd, ...args]);
    return run(inv.file, inv.args, { env: inv.env, timeout: 10_000 }).then((r) => r.stdout);
  };
  /** xclip keeps serving the selection until it has been pasted `loops` times */
  const setDesktopClipboard = (text: string) => {
    const inv = xInvocation(first, ['xclip', '-selection', 'clipboard', '-loops', '2']);
    const c = spawn(inv.file, inv.args, {
      env: inv.env,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    c.stdin.end(text);
    setTimeout(() => c.kill(), 15_000).unref();
  };
  const homeFile = (name: string) => path.join(first.home, name);
  const readHome = (name: string) =>
    fs.existsSync(homeFile(name)) ? fs.readFileSync(homeFile(name), 'utf8') : undefined;
  const pixel = (p: Page, px: number, py: number) =>
    p.evaluate(
      ([a, b]) => {
        const c = document.querySelector<HTMLCanvasElement>('#screen')!;
        return [...c.getContext('2d')!.getImageData(a!, b!, 1, 1).data];
      },
      [px, py],
    );

  async function signIn(p: Page) {
    await p.goto(server.url + '/');
    await p.getByLabel('Username').fill(ADMIN.username);
    await p.getByLabel('Password').fill(ADMIN.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p
      .getByRole('button', { name: /^(Connect|Resume)$/ })
      .first()
      .waitFor({ timeout: 15_000 });
  }

  async function connect(p: Page) {
    const t0 = Date.now();
    await openDesktop(p, p.getByRole('button', { name: /^(Connect|Resume)$/ }).first());
    await p.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      { timeout: 30_000 },
    );
    const ms = Date.now() - t0;
    await p.locator('#screen').focus();
    return ms;
  }

  async function type(p: Page, text: string) {
    await p.keyboard.type(text, { delay: 15 });
  }

  beforeAll(async () => {
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_GEOMETRY: '1024x768',
      BROKER_TICK_MS: '1000',
    });
    await server.start();
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    page = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    // log off whatever is left so no desktop outlives the test
    const h = desktopId ? desktop()?.handle : null;
    await server?.stop();
    for (const pid of [h?.xvncPid, h?.sessionPid])
      if (pid && alive(pid)) process.kill(-pid, 'SIGKILL');
  });

  it('signs in through the form and shows the desktops with Connect', async () => {
    await page.goto(server.url + '/');
    await expect.poll(() => page.url()).toContain('/login');
    await signIn(page);
  });

  it('connects: the desktop fills the canvas and a focused terminal takes typing', async () => {
    const ms = await connect(page);
    console.log(`connect → first frame drawn: ${ms} ms`);
    desktopId = await page.evaluate(
      () => (window as unknown as VdiWindow).__vdiViewer?.desktopId ?? '',
    );
    if (!desktopId) {
      const sid = page.url().split('/desktop/')[1]!.split(/[?#]/)[0]!;
      desktopId = desktopOf(sid);
    }
    first = desktop()!.handle!;
    expect(first.display).toBeGreaterThan(0);
    const size = await page.evaluate(() => [
      (window as unknown as VdiWindow).__vdiViewer!.width,
      (window as unknown as VdiWindow).__vdiViewer!.height,
    ]);
    expect(size).toEqual([1024, 768]);
    // a terminal window is open and has the keyboard focus: typing goes straight into it
    await until(
      async () =>
        /xterm/i.test((await x('xdotool', ['getwindowfocus', 'getwindowname'])).toString()),
      15_000,
      'focused terminal',
    );
    await type(page, `echo ${token} > ~/e2e-token.txt`);
    await page.keyboard.press('Enter');
    await until(
      () => readHome('e2e-token.txt')?.trim() === token,
      15_000,
      'token file written through the browser',
    );
  });

  it('sends symbols, Backspace, Tab, arrows and Ctrl combinations', async () => {
    const symbols = 'Az09-_=+[]{};:,.<>/?|~!@#$%^&*()';
    // single quotes: no history expansion (!) or variables ($) in the shell
    await type(page, `printf '%s' '${symbols}' > ~/keys.txt`);
    await page.keyboard.press('Enter');
    await until(() => readHome('keys.txt') === symbols, 15_000, 'symbols typed');
    await type(page, 'echo abX');
    await page.keyboard.press('Backspace');
    await type(page, 'c > ~/bs.txt');
    await page.keyboard.press('Enter');
    await until(() => readHome('bs.txt')?.trim() === 'abc', 15_000, 'backspace');
    await type(page, 'echo y');
    await page.keyboard.press('ArrowLeft');
    await type(page, 'x');
    await page.keyboard.press('End');
    await type(page, ' > ~/arrow.txt');
    await page.keyboard.press('Enter');
    await until(() => readHome('arrow.txt')?.trim() === 'xy', 15_000, 'arrows');
    await type(page, 'this line is discarded');
    await page.keyboard.press('Control+U'); // readline: kill to start of line
    await type(page, 'ech');
    await page.keyboard.press('Tab'); // completes to "echo "
    await type(page, 'ctrl-ok > ~/ctrl.txt');
    await page.keyboard.press('Enter');
    await until(() => readHome('ctrl.txt')?.trim() === 'ctrl-ok', 15_000, 'Ctrl+U and Tab');
  });

  it('maps mouse buttons, position and wheel, and modifier combinations, onto the desktop', async () => {
    const out = path.join(first.home, 'xev.log');
    const inv = xInvocation(first, [
      'sh',
      '-c',
      `exec xev -geometry 300x200+600+450 -event button -event keyboard > ${path.join(homeInside(first), 'xev.log')}`,
    ]);
    const xev = execFile(inv.file, inv.args, { env: inv.env });
    try {
      await until(
        async () =>
          (await x('xdotool', ['search', '--name', 'Event Tester'])).toString().trim().length > 0,
        10_000,
        'xev window',
      );
      const box = (await page.locator('#screen').boundingBox())!;
      const at = (dx: number, dy: number) => ({
        x: box.x + (dx * box.width) / 1024,
        y: box.y + (dy * box.height) / 768,
      });
      const p = at(750, 550);
      await page.mouse.move(p.x, p.y);
      await until(
        async () => {
          const loc = (await x('xdotool', ['getmouselocation', '--shell'])).toString();
          const X = Number(/X=(\d+)/.exec(loc)?.[1]);
          const Y = Number(/Y=(\d+)/.exec(loc)?.[1]);
          return Math.abs(X - 750) <= 2 && Math.abs(Y - 550) <= 2;
        },
        10_000,
        'pointer position on the desktop',
      );
      await page.mouse.click(p.x, p.y, { button: 'left' });
      await page.mouse.click(p.x, p.y, { button: 'middle' });
      await page.mouse.click(p.x, p.y, { button: 'right' });
      await page.mouse.wheel(0, 300);
      await page.mouse.wheel(0, -300);
      await until(
        () => {
          const log = fs.readFileSync(out, 'utf8');
          return [1, 2, 3, 4, 5].every((b) => log.includes(`button ${b},`));
        },
        10_000,
        'xev to see buttons 1-5',
      );
      // the left click focused the xev window: Alt, Ctrl and Shift combinations reach it
      await page.keyboard.press('Alt+x');
      await page.keyboard.press('Control+Shift+KeyA');
      await until(
        () => {
          const log = fs.readFileSync(out, 'utf8');
          const withMod = (mask: number, keysym: string) =>
            [...log.matchAll(/state 0x([0-9a-f]+), keycode \d+ \(keysym (0x[0-9a-f]+),/g)].some(
              (m) => (parseInt(m[1]!, 16) & mask) === mask && m[2] === keysym,
            );
          return (
            ['Alt_L', 'Control_L', 'Shift_L'].every((k) => log.includes(`, ${k})`)) &&
            withMod(0x8, '0x78') && // Mod1 (Alt) held while x
            withMod(0x4, '0x41') // Control held while A (Shift gives the capital)
          );
        },
        10_000,
        'xev to see Alt+x and Ctrl+Shift+A',
      );
    } finally {
      xev.kill();
    }
  });

  it("shows the desktop's own drawing: the root window colour reaches the canvas", async () => {
    await x('xsetroot', ['-solid', '#3366cc']);
    // bottom-right corner: root window, not the terminal
    await expect
      .poll(() => pixel(page, 1015, 760), { timeout: 10_000 })
      .toEqual([0x33, 0x66, 0xcc, 255]);
  });

  it('shares the clipboard both ways while the viewer has focus', async () => {
    const fromDesktop = `from-desktop-${token}`;
    setDesktopClipboard(fromDesktop);
    await expect
      .poll(() => page.evaluate(() => navigator.clipboard.readText()), { timeout: 10_000 })
      .toBe(fromDesktop);
    const fromBrowser = `from-browser-${token}`;
    await page.evaluate((t) => navigator.clipboard.writeText(t), fromBrowser);
    // the viewer offers the local clipboard when it (re)gains focus, and on paste
    await page.locator('#screen').blur();
    await page.locator('#screen').focus();
    await page.keyboard.press('Control+V').catch(() => undefined);
    await until(
      async () => (await x('xclip', ['-o', '-selection', 'clipboard'])).toString() === fromBrowser,
      10_000,
      'browser clipboard on the desktop',
    );
  });

  it('closing the tab keeps the desktop; a new tab reconnects to the same one', async () => {
    await page.close();
    await until(
      () => {
        const s = readStore(
          dataDir,
          (db) =>
            db
              .prepare("select state from sessions where desktop_id = ? and state <> 'ended'")
              .get(desktopId) as { state: string } | undefined,
        );
        return s?.state === 'disconnected';
      },
      10_000,
      'session marked disconnected',
    );
    expect(alive(first.xvncPid)).toBe(true);
    page = await context.newPage();
    await page.goto(server.url + '/');
    await page
      .getByRole('button', { name: /^(Connect|Resume)$/ })
      .first()
      .waitFor();
    await connect(page);
    const again = desktop()!.handle!;
    expect(again).toMatchObject({
      display: first.display,
      xvncPid: first.xvncPid,
      sessionPid: first.sessionPid,
    });
    await expect
      .poll(() => pixel(page, 1015, 760), { timeout: 10_000 })
      .toEqual([0x33, 0x66, 0xcc, 255]);
  });

  it('a different browser signs in and gets the same desktop', async () => {
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const p = await other.newPage();
      await signIn(p);
      await connect(p);
      expect(desktop()!.handle).toMatchObject({ display: first.display, xvncPid: first.xvncPid });
      await type(p, `echo second-browser-${token} > ~/second.txt`);
      await p.keyboard.press('Enter');
      await until(
        () => readHome('second.txt')?.trim() === `second-browser-${token}`,
        15_000,
        'typing from the second browser',
      );
    } finally {
      await other.close();
    }
  });

  it('survives a server restart: the viewer reconnects by itself to the same desktop', async () => {
    await server.stop('SIGKILL'); // a crash, not a clean stop
    await page.waitForFunction(() => document.body.dataset.viewer === 'reconnecting', null, {
      timeout: 30_000,
    });
    await page
      .getByText(/Reconnecting/)
      .first()
      .waitFor({ state: 'visible' });
    expect(alive(first.xvncPid)).toBe(true);
    await server.start();
    await page.waitForFunction(() => document.body.dataset.viewer === 'connected', null, {
      timeout: 60_000,
    });
    expect(desktop()!.handle).toMatchObject({
      display: first.display,
      xvncPid: first.xvncPid,
      sessionPid: first.sessionPid,
    });
    expect(readHome('e2e-token.txt')?.trim()).toBe(token);
    await page.locator('#screen').focus();
    await type(page, `echo after-restart > ~/restart.txt`);
    await page.keyboard.press('Enter');
    await until(
      () => readHome('restart.txt')?.trim() === 'after-restart',
      15_000,
      'typing after the restart',
    );
  });

  it('Log off ends the session and stops the desktop; the next Connect starts a fresh one', async () => {
    // the faded toolbar comes back near the top edge; log off asks first
    await page.mouse.move(12, 4);
    await page.getByRole('button', { name: 'Log off' }).click();
    await page
      .getByRole('dialog', { name: 'Log off?' })
      .getByRole('button', { name: 'Log off' })
      .click();
    await page.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: 15_000,
    });
    await until(
      () => !alive(first.xvncPid) && !alive(first.sessionPid),
      15_000,
      'desktop processes gone',
    );
    await until(() => desktop() === undefined, 10_000, 'desktop record removed');
    const oldId = desktopId;
    await page.goto(server.url + '/');
    await page
      .getByRole('button', { name: /^(Connect|Resume)$/ })
      .first()
      .waitFor();
    await connect(page);
    const sid = page.url().split('/desktop/')[1]!.split(/[?#]/)[0]!;
    desktopId = desktopOf(sid);
    expect(desktopId).not.toBe(oldId);
    first = desktop()!.handle!;
    expect(readHome('e2e-token.txt')).toBeUndefined();
    // the faded toolbar comes back near the top edge; log off asks first
    await page.mouse.move(12, 4);
    await page.getByRole('button', { name: 'Log off' }).click();
    await page
      .getByRole('dialog', { name: 'Log off?' })
      .getByRole('button', { name: 'Log off' })
      .click();
    await page.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: 15_000,
    });
    await until(() => !alive(first.xvncPid), 15_000, 'second desktop stopped');
  });
});
