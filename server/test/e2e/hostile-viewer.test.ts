/**
 * What a user sees in Chromium when their desktop is a hostile VNC server: the real reason,
 * in our words, in the viewer's overlay: for a refusal before the first frame (a screen
 * too large) and for a link dropped later (a resize to a screen too large).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { HostileProvider, startHostileServer, type HostileServer } from '../helpers/hostile.js';
import {
  ADMIN,
  Api,
  startServer,
  tempDirs,
  testConfig,
  type TestServer,
} from '../helpers/server.js';

describe('a hostile desktop in the browser', () => {
  const dirs = tempDirs('hostile-e2e');
  const socketPath = path.join(dirs.runDir, 'hostile.sock');
  let t: TestServer;
  let browser: Browser;
  let page: Page;
  let hostile: HostileServer | undefined;

  beforeAll(async () => {
    t = await startServer(testConfig({ DEFAULT_POOL: 'false' }, dirs), {
      providers: [new HostileProvider(socketPath)],
    });
    const admin = await new Api(t.url).login(ADMIN.username, ADMIN.password);
    const pool = await admin.post('/api/admin/pools', {
      name: 'Hostile desktop',
      provider: 'vnc',
      template: { hosts: [{ host: '127.0.0.1', port: 5999 }] },
      maxSize: 1,
    });
    const me = (await admin.get('/api/auth/me')).body as { id: string };
    await admin.post('/api/admin/entitlements', {
      poolId: pool.body.id,
      principalType: 'user',
      principalId: me.id,
    });
    browser = await launchChromium();
    page = await (await browser.newContext()).newPage();
    await page.goto(t.url + '/');
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page
      .getByRole('button', { name: /^(Connect|Resume)$/ })
      .first()
      .waitFor({ timeout: 15_000 });
  });

  afterAll(async () => {
    await browser?.close();
    await hostile?.stop();
    await t?.close();
    fs.rmSync(dirs.dataDir, { recursive: true, force: true });
    fs.rmSync(dirs.runDir, { recursive: true, force: true });
  });

  it('shows why a desktop whose screen is too large cannot be opened', async () => {
    hostile = await startHostileServer(socketPath, 'huge-init');
    await openDesktop(page, page.getByRole('button', { name: /^(Connect|Resume)$/ }).first());
    await page.getByText('Cannot open this desktop').waitFor({ timeout: 30_000 });
    const reason = await page.locator('.end-reason').textContent();
    expect(reason).toBe(
      "the desktop's screen is 16384×16384 (268.4 megapixels); this pool allows at most 8192×8192 and 16.8 megapixels",
    );
    await hostile.stop();
  });

  it('shows why the link was dropped when the screen grows too large later', async () => {
    hostile = await startHostileServer(socketPath, 'huge-resize');
    await page.goto(t.url + '/');
    await openDesktop(page, page.getByRole('button', { name: /^(Connect|Resume)$/ }).first());
    const banner = page.locator('.banner-warn').filter({ hasText: '16384×16384' });
    await banner.waitFor({ timeout: 30_000 });
    expect(await banner.textContent()).toContain(
      "The connection to the desktop was lost. Trying to restore it… (the desktop's screen is 16384×16384",
    );
  });
});
