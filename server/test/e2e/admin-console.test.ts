/**
 * Issue 3 end to end: the admin console in real Chromium against the real server process
 * and real Xvnc desktops. The admin creates a floating pool and a user and entitles the
 * user; the user (a second browser context) sees exactly that pool, connects and types; the
 * admin watches the live session (thumbnail, shadow), messages the user and logs the
 * session off; the user's viewer ends and the desktop's Xvnc is gone; the audit log has it.
 *
 * Each test sets up what it needs, so any one of them runs alone (`-t 'name'`): what a test
 * is not about (the admin's sign-in, a pool, a user, a grant, the user's live session, a
 * shadow viewer) comes through the REST API or a plain URL. What a test makes through the UI
 * it hands on while it lasts, as a user of the console would go on: the sign-in test's page
 * is the console of the tests after it; the session the user connects is the one the admin
 * watches, shadows, messages and logs off; the audit test reads what happened to it (run
 * alone, each takes its own: a desktop costs seconds, so the whole file starts only one).
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
import type { ConnectResult, Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { alive, killLeftDesktop, xInvocation } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, Api, until } from '../helpers/server.js';

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
/** The header the API asks of state-changing calls (its CSRF guard). */
const API_HEADERS = { 'x-requested-with': 'vdi' };

interface Account {
  id: string;
  username: string;
  password: string;
}

/** A user's session with a running desktop and the user's viewer drawing it. */
interface LiveSession {
  user: Account;
  pool: Pool;
  sessionId: string;
  desktop: XvncHandle;
  userCtx: BrowserContext;
  userPage: Page;
  /** what the admin did to it so far, for the audit test */
  shadowed?: boolean;
  messaged?: boolean;
}

describe('the admin console runs the live system', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-adm-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vadm-'));
  const token = randomBytes(4).toString('hex');
  let made = 0;
  /** the pools made through the API, force-deleted at the end */
  const pools: string[] = [];
  /** a name no other test uses */
  const unique = (what: string) => `${what}-${token}-${++made}`;
  const notice = `Saving your work is a good idea (${token})`;

  let server: ServerProcess;
  let browser: Browser;
  let api: Api | undefined;
  let consoleAdmin: { ctx: BrowserContext; page: Page } | undefined;
  let live: LiveSession | undefined;
  let shadow: { sessionId: string; page: Page } | undefined;
  /** the session the log-off test ended, for the audit test */
  let loggedOff: LiveSession | undefined;
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
  const desktopOf = (sessionId: string): XvncHandle => {
    const desktopId = db(
      (d) =>
        (
          d.prepare('select desktop_id from sessions where id = ?').get(sessionId) as {
            desktop_id: string;
          }
        ).desktop_id,
    );
    return handles().find((r) => r.id === desktopId)!.handle;
  };
  const x = (desktop: XvncHandle, cmd: string, args: string[]) => {
    const inv = xInvocation(desktop, [cmd, ...args]);
    return run(inv.file, inv.args, { env: inv.env, timeout: 10_000 }).then((r) => r.stdout);
  };
  const readHome = (desktop: XvncHandle, name: string): string | undefined => {
    const f = path.join(desktop.home, name);
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

  // ── set-up through the REST API ──

  const adminApi = async (): Promise<Api> =>
    (api ??= await new Api(server.url).login(ADMIN.username, ADMIN.password));

  /** A floating xvnc pool of at most 2 desktops, each with outbound network and limits. */
  async function makePool(): Promise<Pool> {
    const r = await (
      await adminApi()
    ).post('/api/admin/pools', {
      name: unique('e2e-pool'),
      description: 'made by the admin e2e test',
      provider: 'xvnc',
      assignment: 'floating',
      maxSize: 2,
      template: {
        width: 1024,
        height: 768,
        network: 'outbound',
        limits: { memoryMb: 2048, pids: 512 },
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const pool = r.body;
    pools.push(pool.id);
    return pool;
  }

  async function makeUser(): Promise<Account> {
    const account = { username: unique('alice'), password: `pw-${token}-secret` };
    const r = await (
      await adminApi()
    ).post('/api/admin/users', { ...account, role: 'user', displayName: 'Alice E2E' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return { ...account, id: r.body.id };
  }

  async function entitle(pool: Pool, user: Account): Promise<void> {
    const r = await (
      await adminApi()
    ).post('/api/admin/entitlements', {
      poolId: pool.id,
      principalType: 'user',
      principalId: user.id,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  }

  /** A browser context signed in as `who` (the cookie comes from the API, not the form). */
  async function signedInContext(
    who: { username: string; password: string },
    viewport: { width: number; height: number },
  ): Promise<BrowserContext> {
    const ctx = await browser.newContext({ viewport });
    const r = await ctx.request.post(`${server.url}/api/auth/login`, {
      data: { username: who.username, password: who.password },
      headers: API_HEADERS,
    });
    expect(r.status()).toBe(200);
    return ctx;
  }

  /** The admin's console: the page the sign-in test opened, or one signed in through the API. */
  async function adminConsole(): Promise<Page> {
    if (!consoleAdmin) {
      const ctx = await signedInContext(ADMIN, { width: 1400, height: 900 });
      consoleAdmin = { ctx, page: await ctx.newPage() };
    }
    return consoleAdmin.page;
  }

  /** The user's viewer is drawing and the desktop's terminal has the keyboard focus. */
  async function desktopReady(userPage: Page, desktop: XvncHandle): Promise<void> {
    await drawing(userPage);
    expect(desktop.display).toBeGreaterThan(0);
    expect(alive(desktop.xvncPid)).toBe(true);
    await userPage.locator('#screen').focus();
    await until(
      async () => /xterm/i.test(await x(desktop, 'xdotool', ['getwindowfocus', 'getwindowname'])),
      UI_MS,
      'a focused terminal in the new pool',
    );
  }

  /**
   * The live session the tests about sessions use: the one the UI test connected, while it
   * lasts, or else a new one (pool, user and grant through the API, the viewer by its URL),
   * drawing in the user's viewer. A test that types waits for the terminal (desktopReady).
   */
  async function liveSession(): Promise<LiveSession> {
    if (live) return live;
    const pool = await makePool();
    const user = await makeUser();
    await entitle(pool, user);
    const userCtx = await signedInContext(user, { width: 1280, height: 900 });
    const r = await userCtx.request.post(`${server.url}/api/pools/${pool.id}/connect`, {
      data: {},
      headers: API_HEADERS,
    });
    expect(r.status()).toBe(200);
    const { sessionId } = (await r.json()) as ConnectResult;
    const userPage = await userCtx.newPage();
    await userPage.goto(`${server.url}/desktop/${sessionId}`);
    await drawing(userPage);
    live = { user, pool, sessionId, desktop: desktopOf(sessionId), userCtx, userPage };
    return live;
  }

  /** An administrator's view-only viewer of `s` (the Shadow button's, or one opened by URL). */
  async function shadowViewer(s: LiveSession): Promise<Page> {
    if (shadow?.sessionId === s.sessionId) return shadow.page;
    await adminConsole();
    const page = await consoleAdmin!.ctx.newPage();
    await page.goto(`${server.url}/desktop/${s.sessionId}?shadow=1`);
    await drawing(page);
    shadow = { sessionId: s.sessionId, page };
    s.shadowed = true;
    return page;
  }

  /** The session is over: the next test that needs one gets a new one. */
  async function retire(s: LiveSession): Promise<void> {
    if (shadow?.sessionId === s.sessionId) {
      await shadow.page.close();
      shadow = undefined;
    }
    if (live === s) live = undefined;
    await s.userCtx.close();
  }

  /**
   * A session that was connected, shadowed, messaged and then logged off by the admin: the
   * one the log-off test ended, when it went through all that, or else one taken through it
   * here (the message and the log-off through the API).
   */
  async function sessionThroughItsLife(): Promise<LiveSession> {
    if (loggedOff?.shadowed && loggedOff.messaged) return loggedOff;
    const s = await liveSession();
    const shadowPage = await shadowViewer(s);
    const rest = await adminApi();
    const message = await rest.post(`/api/admin/sessions/${s.sessionId}/message`, {
      text: notice,
    });
    expect(message.status).toBe(204);
    s.messaged = true;
    expect((await rest.post(`/api/admin/sessions/${s.sessionId}/logoff`)).status).toBe(204);
    await expect.poll(() => viewerState(shadowPage), { timeout: UI_MS }).toBe('ended');
    await retire(s);
    loggedOff = s;
    return s;
  }

  // ── the UI ──

  async function signIn(p: Page, who: { username: string; password: string }, next = '/') {
    await p.goto(server.url + next);
    await p.waitForURL(/\/login/);
    await p.getByLabel('Username').fill(who.username);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL((u) => !u.pathname.startsWith('/login'));
  }

  /** The console's tab `label`: by its link when the console is open, else by its URL. */
  async function openTab(admin: Page, label: string) {
    const tab = label.toLowerCase();
    if (!new URL(admin.url(), server.url).pathname.startsWith('/admin')) {
      await admin.goto(`${server.url}/admin/${tab}`);
      await admin.getByRole('heading', { name: 'Admin console' }).waitFor({ timeout: UI_MS });
      return;
    }
    await admin
      .getByRole('navigation', { name: 'Admin sections' })
      .getByRole('link', { name: label, exact: true })
      .click();
    await admin.waitForURL(new RegExp(`/admin/${tab}$`));
  }

  /** The sessions tab with the row of `s` in it. */
  async function sessionsTabWith(s: LiveSession): Promise<{ admin: Page; row: Locator }> {
    const admin = await adminConsole();
    await openTab(admin, 'Sessions');
    const row = admin.locator(`tr[data-session-id="${s.sessionId}"]`);
    await row.waitFor({ timeout: UI_MS });
    return { admin, row };
  }

  const flashOk = (admin: Page, text: string | RegExp) =>
    admin.locator('.flash-ok').filter({ hasText: text });

  beforeAll(async () => {
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
    await browser?.close();
    // what still runs (a test run alone keeps its session) is ended by the server itself:
    // force-deleting a pool stops its desktops the way they were started (sandbox, cgroup)
    if (api) for (const id of pools) await api.del(`/api/admin/pools/${id}?force=true`);
    try {
      handles();
      await until(
        () => [...seen.values()].every((h) => !alive(h.xvncPid) && !alive(h.sessionPid)),
        UI_MS,
        'the desktops to stop',
      );
    } catch {
      /* no database yet, or a desktop that would not stop: ended below */
    }
    await server?.stop();
    // desktops outlive the server on purpose; this test must not leave any behind
    const kill = (target: number): boolean => {
      try {
        process.kill(target, 'SIGKILL');
        return true;
      } catch {
        return false;
      }
    };
    for (const h of seen.values()) {
      // a sandbox ends with its supervisor and first process; else each leads a process group
      for (const pid of [h.supervisorPid, h.initPid, h.xvncPid, h.sessionPid])
        if (pid !== undefined && alive(pid) && !kill(-pid)) kill(pid);
      // and what runs in its cgroup outside the sandbox (slirp4netns)
      await killLeftDesktop(h);
    }
    for (const dir of [dataDir, runDir])
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  });

  it('the admin signs in through the form and opens the console', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const admin = await ctx.newPage();
    await signIn(admin, ADMIN, '/admin/pools');
    await admin.waitForURL(/\/admin\/pools$/);
    await admin.getByRole('heading', { name: 'Admin console' }).waitFor();
    // the tests in the console go on in this page
    if (consoleAdmin) await ctx.close();
    else consoleAdmin = { ctx, page: admin };
  });

  it('creates a floating xvnc pool', async () => {
    const admin = await adminConsole();
    await openTab(admin, 'Pools');
    const poolName = unique('e2e-pool');
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
    await flashOk(admin, `Pool ${poolName} created.`).waitFor({ timeout: UI_MS });
    const row = admin.getByRole('row').filter({ hasText: poolName });
    await expect.poll(() => row.textContent()).toMatch(/Floating/);
    expect(await row.textContent()).toContain('0–2');
    expect(await row.textContent()).toContain('outbound · 2048 MiB · 512 tasks');
  });

  it('creates a user', async () => {
    const admin = await adminConsole();
    await openTab(admin, 'Users');
    const username = unique('alice');
    const form = admin
      .locator('form')
      .filter({ has: admin.getByRole('button', { name: 'Create user' }) });
    await form.getByLabel('Username').fill(username);
    await form.getByLabel('Password').fill(`pw-${token}-secret`);
    await form.getByLabel('Role').selectOption('user');
    await form.getByLabel('Display name').fill('Alice E2E');
    await form.getByRole('button', { name: 'Create user' }).click();
    await flashOk(admin, `User ${username} created.`).waitFor({ timeout: UI_MS });
    await admin
      .getByRole('row')
      .filter({ hasText: username })
      .filter({ hasText: 'Alice E2E' })
      .waitFor();
  });

  it('entitles the user to the pool', async () => {
    const pool = await makePool();
    const user = await makeUser();
    const admin = await adminConsole();
    await openTab(admin, 'Entitlements');
    // the selects fill from the API after the tab opens
    const poolSelect = admin.getByLabel('Pool', { exact: true });
    await expect
      .poll(() => poolSelect.locator('option', { hasText: pool.name }).count(), {
        timeout: UI_MS,
      })
      .toBe(1);
    await poolSelect.selectOption({ label: pool.name });
    await admin.getByLabel('User', { exact: true }).selectOption({ label: user.username });
    await admin.getByRole('button', { name: 'Grant' }).click();
    await flashOk(admin, 'Access granted.').waitFor({ timeout: UI_MS });
    await admin
      .getByRole('row')
      .filter({ hasText: pool.name })
      .filter({ hasText: user.username })
      .getByRole('button', { name: 'Revoke' })
      .waitFor();
  });

  it('the user signs in elsewhere, sees exactly that pool, connects and types into the terminal', async () => {
    const pool = await makePool();
    const user = await makeUser();
    await entitle(pool, user);
    const userCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const userPage = await userCtx.newPage();
    await signIn(userPage, user);
    const cards = userPage.locator('article');
    await cards.first().waitFor({ timeout: UI_MS });
    expect(await cards.count()).toBe(1);
    await userPage.getByRole('article', { name: pool.name }).waitFor();
    expect(await userPage.getByRole('article', { name: 'Linux desktop' }).count()).toBe(0);
    expect(await userPage.getByRole('link', { name: 'Admin' }).count()).toBe(0);

    await openDesktop(
      userPage,
      userPage
        .getByRole('article', { name: pool.name })
        .getByRole('button', { name: /^(Connect|Resume)$/ }),
    );
    await drawing(userPage);
    const sessionId = new URL(userPage.url()).pathname.split('/desktop/')[1]!;
    const desktop = desktopOf(sessionId);
    expect(await hook(userPage)).toMatchObject({ width: 1024, height: 768 });
    await desktopReady(userPage, desktop);
    await userPage.keyboard.type(`echo ${token} > ~/typed.txt`, { delay: 10 });
    await userPage.keyboard.press('Enter');
    await until(
      () => readHome(desktop, 'typed.txt')?.trim() === token,
      UI_MS,
      'typing to reach the desktop',
    );
    // the tests about live sessions go on with this one
    live ??= { user, pool, sessionId, desktop, userCtx, userPage };
  });

  it('the admin sees the live session with a thumbnail that loads and refreshes', async () => {
    const s = await liveSession();
    const { row } = await sessionsTabWith(s);
    await expect
      .poll(() => row.textContent(), { timeout: UI_MS })
      .toMatch(new RegExp(`${s.user.username}.*${s.pool.name}.*active`, 's'));
    // the desktop's own account and its live CPU and memory against the pool's limit
    const account = s.desktop.account;
    expect(account, 'a desktop account (the suite runs as root)').toBeDefined();
    await expect
      .poll(() => row.textContent(), { timeout: UI_MS })
      .toMatch(
        new RegExp(
          `${account!.name} · CPU \\d+(\\.\\d)?( s|%) · \\d+ MiB of 2\\.0 GiB · \\d+ tasks`,
        ),
      );
    const tip = await row.locator('td', { hasText: account!.name }).getAttribute('title');
    expect(tip).toContain(`uid ${account!.uid}`);
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
    const { row } = await sessionsTabWith(await liveSession());
    const thumb = row.locator('img.thumb');
    const bright = () =>
      thumb.evaluate((img: HTMLImageElement) => {
        if (!img.complete || img.naturalWidth === 0) return 0;
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
    await expect.poll(bright, { timeout: UI_MS }).toBeGreaterThan(0.1);
  });

  it('shadows the session: a view-only viewer that sees the user type, and the user is told', async () => {
    const s = await liveSession();
    const { row } = await sessionsTabWith(s);
    const [page] = await Promise.all([
      consoleAdmin!.ctx.waitForEvent('page'),
      row.getByRole('button', { name: 'Shadow' }).click(),
    ]);
    const shadowPage = page;
    shadow ??= { sessionId: s.sessionId, page };
    s.shadowed = true;
    await shadowPage.waitForURL(/\/desktop\/.+\?shadow=1$/);
    await drawing(shadowPage);
    expect((await hook(shadowPage))?.viewOnly).toBe(true);
    await shadowPage.getByText('View only').first().waitFor();
    expect(await shadowPage.getByRole('button', { name: 'Log off' }).count()).toBe(0);
    const { userPage, desktop } = s;
    await desktopReady(userPage, desktop);
    await userPage
      .getByText(/An administrator is watching this session/)
      .waitFor({ timeout: UI_MS });
    // the watcher is not told that someone (they) is watching
    expect(await shadowPage.getByText(/An administrator is watching/).count()).toBe(0);

    // let the shadow's picture settle, then the user types a long line
    await until(
      async () => {
        const a = (await hook(shadowPage))!.lastSeq;
        await new Promise((r) => setTimeout(r, 300));
        return (await hook(shadowPage))!.lastSeq === a;
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
      () => readHome(desktop, 'shadowed.txt')?.includes(token),
      UI_MS,
      'the long line to reach the desktop',
    );
    // the glyphs of ~90 characters, on two lines (command and output)
    await until(
      async () => (await changedSince(shadowPage, '__beforeTyping')) > 1000,
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
      () => readHome(desktop, 'after-shadow.txt')?.trim() === 'after-shadow',
      UI_MS,
      'typing after the shadow tried',
    );
    expect(readHome(desktop, 'from-shadow.txt')).toBeUndefined();
  });

  it('messages the user, who sees it in the viewer', async () => {
    const s = await liveSession();
    const shadowPage = await shadowViewer(s);
    const { admin, row } = await sessionsTabWith(s);
    await admin.bringToFront();
    await row.getByRole('button', { name: 'Message' }).click();
    const dialog = admin.getByRole('dialog');
    await dialog.getByLabel('Message', { exact: true }).fill(notice);
    await dialog.getByRole('button', { name: 'Send message' }).click();
    await dialog.waitFor({ state: 'detached' });
    await flashOk(admin, `Message sent to ${s.user.username}.`).waitFor({ timeout: UI_MS });
    s.messaged = true;
    await s.userPage
      .getByText(`Message from ${ADMIN.username}: ${notice}`)
      .waitFor({ timeout: UI_MS });
    // only the user gets it, not the shadow
    expect(await shadowPage.getByText(notice).count()).toBe(0);
  });

  it('logs the session off: the user is told, the desktop is gone, the row leaves', async () => {
    const s = await liveSession();
    const shadowPage = await shadowViewer(s);
    const { admin, row } = await sessionsTabWith(s);
    await row.getByRole('button', { name: 'Log off' }).click();
    // it asks first
    await admin
      .getByRole('dialog', { name: `Log off ${s.user.username}?` })
      .getByRole('button', { name: 'Log off' })
      .click();
    await flashOk(admin, `${s.user.username} logged off.`).waitFor({ timeout: UI_MS });
    await s.userPage.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: UI_MS,
    });
    await s.userPage.getByRole('heading', { name: 'Your session has ended' }).waitFor();
    await until(
      () => !alive(s.desktop.xvncPid) && !alive(s.desktop.sessionPid),
      UI_MS,
      'the desktop processes to exit',
    );
    await until(
      () => handles().every((r) => r.handle.xvncPid !== s.desktop.xvncPid),
      UI_MS,
      'the desktop record to go',
    );
    await row.waitFor({ state: 'detached', timeout: UI_MS });
    // the shadow viewer ends too: its session is over
    await expect.poll(() => viewerState(shadowPage), { timeout: UI_MS }).toBe('ended');
    await retire(s);
    loggedOff = s;
  });

  it('the audit log lists what the admin and the user did', async () => {
    const s = await sessionThroughItsLife();
    const rest = await adminApi();
    await until(
      async () =>
        (await rest.get('/api/admin/audit?action=session.shadow.end')).body.some(
          (e) => e.target === s.sessionId,
        ),
      UI_MS,
      "the shadow's end in the audit log",
    );

    const admin = await adminConsole();
    await openTab(admin, 'Audit');
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
    // a session is named by its user and pool, not its UUID
    const messageRow = await rowOf('session.message').first().textContent();
    expect(messageRow).toContain(`${s.user.username} · ${s.pool.name}`);
    expect(messageRow).not.toContain(s.sessionId);
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
