/**
 * Issue 3 end to end: the admin console in real Chromium against the real server process
 * and real Xvnc desktops. The admin creates a floating pool and a user and entitles the
 * user; the user (a second browser context) sees exactly that pool, connects and types; the
 * admin watches the live session (thumbnail, shadow), messages the user and logs the
 * session off; the user's viewer ends and the desktop's Xvnc is gone; the audit log has it.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium } from '../helpers/browser.js';
import { alive, xInvocation } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, until } from '../helpers/server.js';

const run = promisify(execFile);

/** The viewer's test hook (client/README.md). */
type ViewerWindow = Window & {
  __vdiViewer?: {
    framesDrawn: number;
    lastSeq: number;
    width: number;
    height: number;
    viewOnly?: boolean;
  };
};

/** Time a browser-side condition may take (a page load, a 2 s table refresh, a frame). */
const UI_MS = 15_000;

describe('the admin console runs the live system', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-adm-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vadm-'));
  const token = randomBytes(4).toString('hex');
  const poolName = `e2e-pool-${token}`;
  const user = { username: `alice-${token}`, password: `pw-${token}-secret` };
  const notice = `Saving your work is a good idea (${token})`;

  let server: ServerProcess;
  let browser: Browser;
  let adminCtx: BrowserContext;
  let userCtx: BrowserContext;
  let admin: Page;
  let userPage: Page;
  let shadowPage: Page | undefined;
  let sessionId = '';
  let desktop: XvncHandle | undefined;
  /** every desktop handle this server ever recorded, so afterAll can leave nothing behind */
  const seen = new Map<string, XvncHandle>();

  const db = <T>(fn: (d: Database.Database) => T): T => readStore(dataDir, fn);
  const handles = (): Array<{ id: string; handle: XvncHandle }> =>
    db(
      (d) =>
        d.prepare('select id, handle from desktops where handle is not null').all() as Array<{
          id: string;
          handle: string;
        }>,
    ).map((r) => {
      const handle = JSON.parse(r.handle) as XvncHandle;
      seen.set(r.id, handle);
      return { id: r.id, handle };
    });
  const x = (cmd: string, args: string[]) => {
    const inv = xInvocation(desktop!, [cmd, ...args]);
    return run(inv.file, inv.args, { env: inv.env, timeout: 10_000 }).then((r) => r.stdout);
  };
  const readHome = (name: string): string | undefined => {
    const f = path.join(desktop!.home, name);
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined;
  };
  const viewerState = (p: Page) => p.evaluate(() => document.body.dataset.viewer);
  const hook = (p: Page) =>
    p.evaluate(() => {
      const v = (window as ViewerWindow).__vdiViewer;
      return v ? { ...v } : undefined;
    });
  /** the viewer is attached and has drawn the desktop */
  const drawing = (p: Page) =>
    p.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as ViewerWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      {
        timeout: 30_000,
      },
    );
  /** Keep a copy of the canvas pixels in the page, under `key`. */
  const snapshotCanvas = (p: Page, key: string) =>
    p.evaluate((k) => {
      const c = document.querySelector<HTMLCanvasElement>('#screen')!;
      (window as unknown as Record<string, Uint8ClampedArray>)[k] = c
        .getContext('2d')!
        .getImageData(0, 0, c.width, c.height)
        .data.slice();
    }, key);
  /** How many pixels differ from the snapshot `key`. */
  const changedSince = (p: Page, key: string) =>
    p.evaluate((k) => {
      const c = document.querySelector<HTMLCanvasElement>('#screen')!;
      const now = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const before = (window as unknown as Record<string, Uint8ClampedArray>)[k]!;
      if (before.length !== now.length) return Number.MAX_SAFE_INTEGER;
      let n = 0;
      for (let i = 0; i < now.length; i += 4) {
        if (now[i] !== before[i] || now[i + 1] !== before[i + 1] || now[i + 2] !== before[i + 2])
          n++;
      }
      return n;
    }, key);

  async function signIn(p: Page, who: { username: string; password: string }, next = '/') {
    await p.goto(server.url + next);
    await p.waitForURL(/\/login/);
    await p.getByLabel('Username').fill(who.username);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL((u) => !u.pathname.startsWith('/login'));
  }

  async function openTab(label: string) {
    await admin
      .getByRole('navigation', { name: 'Admin sections' })
      .getByRole('link', { name: label, exact: true })
      .click();
    await admin.waitForURL(new RegExp(`/admin/${label.toLowerCase()}$`));
  }

  const flashOk = (text: string | RegExp) => admin.locator('.flash-ok').filter({ hasText: text });
  const sessionRow = (): Locator => admin.locator(`tr[data-session-id="${sessionId}"]`);

  beforeAll(async () => {
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_GEOMETRY: '1024x768',
      BROKER_TICK_MS: '1000',
    });
    await server.start();
    browser = await launchChromium();
    adminCtx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    userCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    admin = await adminCtx.newPage();
    userPage = await userCtx.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    try {
      handles();
    } catch {
      /* no database yet */
    }
    await server?.stop();
    // desktops outlive the server on purpose; this test must not leave any behind
    for (const h of seen.values()) {
      for (const pid of [h.xvncPid, h.sessionPid]) if (alive(pid)) process.kill(-pid, 'SIGKILL');
    }
    for (const dir of [dataDir, runDir])
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });

  it('the admin signs in through the form and opens the console', async () => {
    await signIn(admin, ADMIN, '/admin/pools');
    await admin.waitForURL(/\/admin\/pools$/);
    await admin.getByRole('heading', { name: 'Admin console' }).waitFor();
  });

  it('creates a floating xvnc pool', async () => {
    const form = admin
      .locator('form')
      .filter({ has: admin.getByRole('button', { name: 'Create pool' }) });
    await form.getByLabel('Name', { exact: true }).fill(poolName);
    await form.getByLabel('Description', { exact: true }).fill('made by the admin e2e test');
    await form.getByLabel('Provider').selectOption('xvnc');
    await form.getByLabel('Assignment').selectOption('floating');
    await form.getByLabel('Max size').fill('2');
    await form.getByLabel('Width').fill('1024');
    await form.getByLabel('Height').fill('768');
    // each desktop's network and limits
    await form.getByLabel('Network').selectOption('outbound');
    await form.getByLabel('Memory limit (MiB)').fill('2048');
    await form.getByLabel('Process limit').fill('512');
    await form.getByRole('button', { name: 'Create pool' }).click();
    await flashOk(`Pool ${poolName} created.`).waitFor({ timeout: UI_MS });
    const row = admin.getByRole('row').filter({ hasText: poolName });
    await expect.poll(() => row.textContent()).toMatch(/Floating/);
    expect(await row.textContent()).toContain('0–2');
    expect(await row.textContent()).toContain('outbound · 2048 MiB · 512 tasks');
  });

  it('creates a user', async () => {
    await openTab('Users');
    const form = admin
      .locator('form')
      .filter({ has: admin.getByRole('button', { name: 'Create user' }) });
    await form.getByLabel('Username').fill(user.username);
    await form.getByLabel('Password').fill(user.password);
    await form.getByLabel('Role').selectOption('user');
    await form.getByLabel('Display name').fill('Alice E2E');
    await form.getByRole('button', { name: 'Create user' }).click();
    await flashOk(`User ${user.username} created.`).waitFor({ timeout: UI_MS });
    await admin
      .getByRole('row')
      .filter({ hasText: user.username })
      .filter({ hasText: 'Alice E2E' })
      .waitFor();
  });

  it('entitles the user to the pool', async () => {
    await openTab('Entitlements');
    // the selects fill from the API after the tab opens
    const pool = admin.getByLabel('Pool', { exact: true });
    await expect
      .poll(() => pool.locator('option', { hasText: poolName }).count(), { timeout: UI_MS })
      .toBe(1);
    await pool.selectOption({ label: poolName });
    await admin.getByLabel('User', { exact: true }).selectOption({ label: user.username });
    await admin.getByRole('button', { name: 'Grant' }).click();
    await flashOk('Access granted.').waitFor({ timeout: UI_MS });
    await admin
      .getByRole('row')
      .filter({ hasText: poolName })
      .filter({ hasText: user.username })
      .getByRole('button', { name: 'Revoke' })
      .waitFor();
  });

  it('the user signs in elsewhere, sees exactly that pool, connects and types into the terminal', async () => {
    await signIn(userPage, user);
    const cards = userPage.locator('article');
    await cards.first().waitFor({ timeout: UI_MS });
    expect(await cards.count()).toBe(1);
    await userPage.getByRole('article', { name: poolName }).waitFor();
    expect(await userPage.getByRole('article', { name: 'Linux desktop' }).count()).toBe(0);
    expect(await userPage.getByRole('link', { name: 'Admin' }).count()).toBe(0);

    await userPage
      .getByRole('article', { name: poolName })
      .getByRole('button', { name: 'Connect' })
      .click();
    await userPage.waitForURL(/\/desktop\//, { timeout: 30_000 });
    await drawing(userPage);
    sessionId = new URL(userPage.url()).pathname.split('/desktop/')[1]!;
    const desktopId = db(
      (d) =>
        (
          d.prepare('select desktop_id from sessions where id = ?').get(sessionId) as {
            desktop_id: string;
          }
        ).desktop_id,
    );
    desktop = handles().find((r) => r.id === desktopId)!.handle;
    expect(desktop.display).toBeGreaterThan(0);
    expect(alive(desktop.xvncPid)).toBe(true);
    expect(await hook(userPage)).toMatchObject({ width: 1024, height: 768 });

    await userPage.locator('#screen').focus();
    await until(
      async () => /xterm/i.test(await x('xdotool', ['getwindowfocus', 'getwindowname'])),
      UI_MS,
      'a focused terminal in the new pool',
    );
    await userPage.keyboard.type(`echo ${token} > ~/typed.txt`, { delay: 10 });
    await userPage.keyboard.press('Enter');
    await until(
      () => readHome('typed.txt')?.trim() === token,
      UI_MS,
      'typing to reach the desktop',
    );
  });

  it('the admin sees the live session with a thumbnail that loads and refreshes', async () => {
    await openTab('Sessions');
    const row = sessionRow();
    await row.waitFor({ timeout: UI_MS });
    await expect
      .poll(() => row.textContent(), { timeout: UI_MS })
      .toMatch(new RegExp(`${user.username}.*${poolName}.*active`, 's'));
    // the desktop's own account and its live CPU and memory against the pool's limit
    expect(desktop!.account, 'a desktop account (the suite runs as root)').toBeDefined();
    await expect
      .poll(() => row.textContent(), { timeout: UI_MS })
      .toMatch(
        new RegExp(
          `${desktop!.account!.name} · CPU \\d+(\\.\\d)?( s|%) · \\d+ MiB of 2\\.0 GiB · \\d+ tasks`,
        ),
      );
    const tip = await row.locator('td', { hasText: desktop!.account!.name }).getAttribute('title');
    expect(tip).toContain(`uid ${desktop!.account!.uid}`);
    expect(tip).toContain('network: outbound');
    expect(tip).toContain('memory 2048 MiB; 512 tasks');
    const thumb = row.locator('img.thumb');
    const loaded = () =>
      thumb.evaluate((img: HTMLImageElement) =>
        img.complete && img.naturalWidth > 0 ? img.currentSrc : '',
      );
    const first = await until(loaded, UI_MS, 'the thumbnail to load');
    expect(await thumb.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
    await until(
      async () => {
        const src = await loaded();
        return src !== '' && src !== first;
      },
      UI_MS,
      'the thumbnail to refresh',
    );
  });

  // the mirror is RGBX with X undefined: a thumbnail that took it for alpha came out black
  it('the thumbnail shows the desktop, not a black picture', async () => {
    const thumb = sessionRow().locator('img.thumb');
    const bright = await thumb.evaluate((img: HTMLImageElement) => {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const g = c.getContext('2d')!;
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i]! + d[i + 1]! + d[i + 2]! > 600) n++;
      return n / (d.length / 4);
    });
    // the white terminal covers about a quarter of the 1024×768 desktop
    expect(bright).toBeGreaterThan(0.1);
  });

  it('shadows the session: a view-only viewer that sees the user type, and the user is told', async () => {
    const [page] = await Promise.all([
      adminCtx.waitForEvent('page'),
      sessionRow().getByRole('button', { name: 'Shadow' }).click(),
    ]);
    shadowPage = page;
    await shadowPage.waitForURL(/\/desktop\/.+\?shadow=1$/);
    await drawing(shadowPage);
    expect((await hook(shadowPage))?.viewOnly).toBe(true);
    await shadowPage.getByText('View only').first().waitFor();
    expect(await shadowPage.getByRole('button', { name: 'Log off' }).count()).toBe(0);
    await userPage
      .getByText(/An administrator is watching this session/)
      .waitFor({ timeout: UI_MS });
    // the watcher is not told that someone (they) is watching
    expect(await shadowPage.getByText(/An administrator is watching/).count()).toBe(0);

    // let the shadow's picture settle, then the user types a long line
    await until(
      async () => {
        const a = (await hook(shadowPage!))!.lastSeq;
        await new Promise((r) => setTimeout(r, 300));
        return (await hook(shadowPage!))!.lastSeq === a;
      },
      UI_MS,
      'the shadow viewer to settle',
    );
    await snapshotCanvas(shadowPage, '__beforeTyping');
    const framesBefore = (await hook(shadowPage))!.framesDrawn;
    await userPage.locator('#screen').focus();
    await userPage.keyboard.type(`echo ${'shadowed-'.repeat(8)}${token} > ~/shadowed.txt`, {
      delay: 5,
    });
    await userPage.keyboard.press('Enter');
    await until(
      () => readHome('shadowed.txt')?.includes(token),
      UI_MS,
      'the long line to reach the desktop',
    );
    // the glyphs of ~90 characters, on two lines (command and output)
    await until(
      async () => (await changedSince(shadowPage!, '__beforeTyping')) > 1000,
      UI_MS,
      'the typing to show in the shadow viewer',
    );
    expect((await hook(shadowPage))!.framesDrawn).toBeGreaterThan(framesBefore);

    // view-only: keys pressed in the shadow do not reach the desktop
    await shadowPage.locator('#screen').focus();
    await shadowPage.keyboard.type('echo shadow-typed > ~/from-shadow.txt', { delay: 5 });
    await shadowPage.keyboard.press('Enter');
    await userPage.locator('#screen').focus();
    await userPage.keyboard.press('Control+U'); // whatever the shadow might have typed goes
    await userPage.keyboard.type('echo after-shadow > ~/after-shadow.txt', { delay: 5 });
    await userPage.keyboard.press('Enter');
    await until(
      () => readHome('after-shadow.txt')?.trim() === 'after-shadow',
      UI_MS,
      'typing after the shadow tried',
    );
    expect(readHome('from-shadow.txt')).toBeUndefined();
  });

  it('messages the user, who sees it in the viewer', async () => {
    await admin.bringToFront();
    await sessionRow().getByRole('button', { name: 'Message' }).click();
    const dialog = admin.getByRole('dialog');
    await dialog.getByLabel('Message', { exact: true }).fill(notice);
    await dialog.getByRole('button', { name: 'Send message' }).click();
    await dialog.waitFor({ state: 'detached' });
    await flashOk(`Message sent to ${user.username}.`).waitFor({ timeout: UI_MS });
    await userPage
      .getByText(`Message from ${ADMIN.username}: ${notice}`)
      .waitFor({ timeout: UI_MS });
    // only the user gets it, not the shadow
    expect(await shadowPage!.getByText(notice).count()).toBe(0);
  });

  it('logs the session off: the user is told, the desktop is gone, the row leaves', async () => {
    await sessionRow().getByRole('button', { name: 'Log off' }).click();
    await flashOk(`${user.username} logged off.`).waitFor({ timeout: UI_MS });
    await userPage.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: UI_MS,
    });
    await userPage.getByRole('heading', { name: 'Your session has ended' }).waitFor();
    await until(
      () => !alive(desktop!.xvncPid) && !alive(desktop!.sessionPid),
      UI_MS,
      'the desktop processes to exit',
    );
    await until(
      () => handles().every((r) => r.handle.xvncPid !== desktop!.xvncPid),
      UI_MS,
      'the desktop record to go',
    );
    await sessionRow().waitFor({ state: 'detached', timeout: UI_MS });
    // the shadow viewer ends too: its session is over
    await expect.poll(() => viewerState(shadowPage!), { timeout: UI_MS }).toBe('ended');
  });

  it('the audit log lists what the admin and the user did', async () => {
    await openTab('Audit');
    const table = admin.getByRole('table');
    const actionsOf = async () =>
      (await table.locator('tbody tr td:nth-child(2)').allTextContents()).map((t) => t.trim());
    const expected = [
      'auth.login',
      'pool.create',
      'user.create',
      'entitlement.grant',
      'session.start',
      'session.connect',
      'session.shadow.start',
      'session.message',
      'session.end',
      'session.shadow.end',
    ];
    await expect.poll(actionsOf, { timeout: UI_MS }).toEqual(expect.arrayContaining(expected));
    const rowOf = (action: string) =>
      table.getByRole('row').filter({
        has: admin.locator('td:nth-child(2)', {
          hasText: new RegExp(`^${action.replace('.', '\\.')}$`),
        }),
      });
    expect(await rowOf('session.end').first().textContent()).toContain(ADMIN.username);
    expect(await rowOf('session.message').first().textContent()).toContain(sessionId);
    // the filter narrows the list
    await admin.getByLabel('Action').fill('session.');
    await admin.getByRole('button', { name: 'Filter' }).click();
    await expect
      .poll(async () => (await actionsOf()).every((a) => a.startsWith('session.')), {
        timeout: UI_MS,
      })
      .toBe(true);
    expect(await actionsOf()).toEqual(expect.arrayContaining(['session.start', 'session.end']));
  });
});
