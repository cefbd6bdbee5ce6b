/**
 * Issue 13, published applications, end to end: real Chromium, the real server process, a
 * sandboxed Xvnc desktop. A pool publishes `xterm -e sh -c '…'` under the name "Line
 * reader": the user's list shows that name, the viewer shows only that program, maximised
 * to the desktop with no window decorations; what the user types reaches it; when it exits
 * the session ends and the viewer says why.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import type { Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { xInvocation } from '../helpers/desktops.js';
import { MediaRig, screenshot } from '../helpers/media.js';
import { until } from '../helpers/server.js';

const run = promisify(execFile);
const APP = 'Line reader';

describe('a published application', () => {
  const rig = new MediaRig();
  let pool: Pool;
  let ctx: BrowserContext;
  let page: Page;
  let sessionId = '';
  let desktop: XvncHandle;
  const x = (args: string[]) => {
    const inv = xInvocation(desktop, ['xdotool', ...args]);
    return run(inv.file, inv.args, { env: inv.env, timeout: 10_000 }).then((r) => r.stdout);
  };

  beforeAll(async () => {
    await rig.start();
    pool = await rig.pool('app', {
      app: {
        name: APP,
        command: `xterm -title line-reader -e sh -c 'echo started > ~/app-started; printf "Type a line, then Enter: "; read line; echo "$line" > ~/app-typed'`,
      },
    });
    ctx = await rig.context();
  });

  afterAll(async () => {
    await rig.stop();
  });

  it('is what the admin console makes of the application fields', async () => {
    const admin = await ctx.newPage();
    await admin.goto(`${rig.server.url}/admin/pools`);
    const form = admin
      .locator('form')
      .filter({ has: admin.getByRole('button', { name: 'Create pool' }) });
    await form.waitFor({ timeout: 15_000 });
    const name = rig.unique('console-app');
    await form.getByLabel('Name', { exact: true }).fill(name);
    await form.getByLabel('Provider').selectOption('xvnc');
    await form.getByLabel('Published application').fill('Clock');
    await form.getByLabel('Application command').fill('xclock -update 1');
    await form.getByLabel('Largest upload (MiB)').fill('16');
    await form.getByRole('button', { name: 'Create pool' }).click();
    await admin.getByRole('row').filter({ hasText: name }).waitFor({ timeout: 15_000 });
    const pools = (await rig.admin.get('/api/admin/pools')).body as Array<{
      id: string;
      name: string;
      template: Record<string, unknown>;
    }>;
    const made = pools.find((p) => p.name === name)!;
    expect(made.template).toMatchObject({
      app: { name: 'Clock', command: 'xclock -update 1' },
      maxUploadMb: 16,
    });
    expect((await rig.admin.del(`/api/admin/pools/${made.id}`)).status).toBeLessThan(300);
    await admin.close();
  });

  it("shows the application's name beside the desktops", async () => {
    const list = await ctx.newPage();
    await list.goto(`${rig.server.url}/`);
    const card = list.getByRole('article', { name: APP });
    await card.waitFor({ timeout: 15_000 });
    expect(await card.innerText()).toContain('Application');
    await screenshot(list, 'desktops-app.png');
    await list.close();
  });

  it('runs only that program, maximised, and takes typing', async () => {
    ({ page, sessionId } = await rig.viewer(ctx, pool));
    desktop = rig.desktopOf(sessionId);
    await until(
      () => fs.existsSync(path.join(desktop.home, 'app-started')),
      20_000,
      'the program started',
    );
    // the program's window fills the desktop: no decorations, maximised
    // (whatever size the desktop has: the viewer may have resized it to the browser window)
    let geometry = '';
    await until(
      async () => {
        const screen = (await x(['getdisplaygeometry'])).trim().replace(' ', 'x');
        const id = (await x(['search', '--name', 'line-reader'])).trim().split('\n')[0]!;
        geometry = await x(['getwindowgeometry', id]);
        return geometry.includes(`Geometry: ${screen}`);
      },
      15_000,
      'the application window maximised',
    );
    expect(geometry).toMatch(/Position: 0,0/);
    // the viewer is titled with the application's name
    expect(await page.locator('.viewer-name').innerText()).toBe(APP);
    await screenshot(page, 'viewer-app.png');
    // nothing else runs as a window (no terminal, no panel): the only named client is the app
    const named = (await x(['search', '--onlyvisible', '--name', '.'])).trim().split('\n');
    const names = await Promise.all(named.map((id) => x(['getwindowname', id])));
    expect(names.map((n) => n.trim()).filter((n) => n && n !== 'line-reader')).toEqual([]);
    await page.locator('#screen').focus();
    await until(
      async () => /line-reader/.test(await x(['getwindowfocus', 'getwindowname'])),
      15_000,
      'the application has the focus',
    );
    await page.keyboard.type('hello app', { delay: 15 });
    await page.keyboard.press('Enter');
    const typed = path.join(desktop.home, 'app-typed');
    await until(
      () => fs.existsSync(typed) && fs.readFileSync(typed, 'utf8') === 'hello app\n',
      15_000,
      'the typed line reached the program',
    );
  });

  it('ends the session when the program exits, and the viewer says so', async () => {
    // the program exited after the line (the test above); the broker's tick notices
    await page.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: 20_000,
    });
    expect(await page.locator('.end-reason').innerText()).toContain(`${APP} exited`);
    const s = rig.sessionState(sessionId)!;
    expect(s.state).toBe('ended');
    expect(s.ended_reason).toBe(`${APP} exited`);
    // the floating desktop is gone with it
    await until(
      () => {
        try {
          process.kill(desktop.xvncPid, 0);
          return false;
        } catch {
          return true;
        }
      },
      20_000,
      "the application's Xvnc stopped",
    );
  });
});
