/**
 * Issue 12 across the members of a real LXD cluster, in Chromium: the server (its own
 * process, HTTPS to the first member with a client certificate) runs a VM desktop — QEMU in
 * a system container of the desktop image — on one member; the admin signs in, connects,
 * starts a counter printing in the guest's console and types a command while the desktop
 * moves to the other member through the admin API. The test asserts what the user sees: no
 * new WebSocket, never "Reconnecting" or "desktop lost", the counter keeps counting, the keys
 * typed during the move all reached the guest, and the source container is gone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { openDesktop, signIn } from '../helpers/browser.js';
import { buildGuest, CELL_H, litPixels, lxdVmTemplate } from '../helpers/guest.js';
import { lxdUnavailable, startCluster, type TestCluster } from '../helpers/lxd.js';
import { freePort, readStore, ServerProcess } from '../helpers/process-server.js';
import { ADMIN, Api, until } from '../helpers/server.js';
import {
  canvasImage,
  cells,
  echoShows,
  framesPainted,
  longestGap,
  PROMPT_CELLS,
  promptRow,
  trackFrames,
  typeLine,
  typeText,
  viewerConnected,
  viewerStates,
  watchViewer,
  viewerBrowser,
  type ViewerWindow,
} from '../helpers/vm-viewer.js';

const skip = lxdUnavailable();
if (skip !== undefined) process.stdout.write(`[lxd-migration] skipped: ${skip}\n`);

/** apart from the integration test's cluster (127.0.0.2, .3) */
const ADDRESSES: [string, string] = ['127.0.0.4:8443', '127.0.0.5:8443'];
const BASE = '/var/tmp/vdi-lxd-e2e';
const BOOT_TIMEOUT_MS = 180_000;
const UI_MS = 20_000;

describe.skipIf(skip !== undefined)('a VM desktop moved between LXD members in Chromium', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-lxdm-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vlm-'));
  const token = `t${randomBytes(3).toString('hex')}`;
  let cluster: TestCluster;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let api: Api;
  let sockets = { opened: 0 };

  const row = (id: string) =>
    readStore(
      dataDir,
      (d: Database.Database) =>
        d.prepare('select state, member, handle, error from desktops where id = ?').get(id) as {
          state: string;
          member: string | null;
          handle: string;
          error: string | null;
        },
    );
  const instanceOf = (id: string) => (JSON.parse(row(id).handle) as { name: string }).name;
  const canvas = () => canvasImage(page);

  beforeAll(async () => {
    const guest = await buildGuest();
    cluster = await startCluster(BASE, ADDRESSES, (line) =>
      process.stdout.write(`[lxd-migration] ${line}\n`),
    );
    fs.writeFileSync(cluster.cert.certFile, cluster.cert.cert);
    fs.writeFileSync(cluster.cert.keyFile, cluster.cert.key, { mode: 0o600 });
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_POOL: 'false',
      BROKER_TICK_MS: '1000',
      LXD_URL: cluster.url,
      LXD_CLIENT_CERT: cluster.cert.certFile,
      LXD_CLIENT_KEY: cluster.cert.keyFile,
      LXD_SERVER_CERT: cluster.clusterCertFile,
      LXD_MEMBER: 'm1',
    });
    await server.start();
    api = await new Api(server.url).login(ADMIN.username, ADMIN.password);
    await api.entitledPool({
      name: 'VM on the cluster',
      provider: 'lxd',
      assignment: 'floating',
      maxSize: 1,
      template: lxdVmTemplate(guest),
    });
    ({ browser, page, sockets } = await viewerBrowser());
  }, 900_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(server?.output.slice(-8000));
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await cluster?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(runDir, { recursive: true, force: true });
  }, 180_000);

  it('moves to the other member while the user types; no reconnect, no key lost', async () => {
    await signIn(page, server.url + '/', ADMIN);
    await openDesktop(page, page.getByRole('button', { name: 'Connect' }), 120_000);
    await viewerConnected(page, 120_000);
    const desktopId = await page.evaluate(() => (window as ViewerWindow).__vdiViewer!.desktopId);
    const from = row(desktopId).member!;
    const to = from === 'm1' ? 'm2' : 'm1';
    const source = instanceOf(desktopId);
    // the guest's shell prompt on the canvas
    await until(async () => promptRow(await canvas()) >= 0, BOOT_TIMEOUT_MS, "the guest's prompt");
    await watchViewer(page);
    const socketsBefore = sockets.opened;

    await typeLine(page, '(i=0; while :; do i=$((i+1)); echo n$i; sleep 0.2; done) &');
    await until(async () => (await framesPainted(page)) > 20, UI_MS, 'the counter painting frames');
    await trackFrames(page);

    // the move, and a command typed across it: it stops the counter, clears the screen and
    // prints a word, so every key of it must arrive for the word to show
    const t0 = Date.now();
    const moving = api.post(`/api/admin/desktops/${desktopId}/move`, { host: to });
    // typed while the memory crosses: from when the gateway opens the destination's display
    // (most of a move before it is LXD creating and starting the destination container)
    await until(() => server.output.includes('"move":true'), 120_000, "the destination's display");
    await typeText(page, `kill $!; clear; echo mv${token}`, 40);
    const moved = (await moving) as unknown as {
      status: number;
      body: Record<string, number | string>;
    };
    await page.keyboard.press('Enter');
    const wall = Date.now() - t0;
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body).toMatchObject({ desktopId, from, to });
    const maxGap = await longestGap(page);

    // the same socket all along, never "reconnecting" or "desktop lost"
    expect(sockets.opened).toBe(socketsBefore);
    const states = await viewerStates(page);
    expect(states).not.toContain('reconnecting');
    expect(states).not.toContain('desktop-lost');
    expect(await page.locator('.viewer-overlay').isVisible()).toBe(false);

    // the word printed on the top row, and the same word typed now at the prompt below it
    const word = `mv${token}`;
    await until(
      async () => {
        const c = await canvas();
        return promptRow(c) > 0 && litPixels(c, 0, 0, word.length, 1) > 0;
      },
      UI_MS,
      'the output of the command typed during the move',
    );
    await typeText(page, word);
    await until(
      async () => {
        const c = await canvas();
        const printed = cells(c, 0, 0, word.length);
        // the prompt's row (the shell may have told of the stopped counter above it)
        for (let r = 1; r < c.height / CELL_H; r++)
          if (printed.equals(cells(c, PROMPT_CELLS, r, word.length))) return true;
        return false;
      },
      UI_MS,
      'the word typed during the move to match the one typed after it',
    ).catch(async (err: unknown) => {
      const shot = path.join(os.tmpdir(), `vdi-lxd-migration-failure-${Date.now()}.png`);
      await page.screenshot({ path: shot });
      throw new Error(`${String(err)} (the page: ${shot})`);
    });
    await page.keyboard.press('Enter');

    // the desktop runs on the other member, the source container is gone
    expect(row(desktopId)).toMatchObject({ state: 'in-use', member: to, error: null });
    const dest = instanceOf(desktopId);
    expect(dest).not.toBe(source);
    const where = await cluster.client.get<{ status: string; location: string }>(
      `/1.0/instances/${dest}`,
    );
    expect(where).toMatchObject({ status: 'Running', location: to });
    await expect(cluster.client.get(`/1.0/instances/${source}`)).rejects.toMatchObject({
      code: 'LXD_NOT_FOUND',
    });

    // typed text still reaches the guest through the moved link
    await echoShows(page, canvas, token);
    // how many input events the gateway held while the memory crossed (from its log)
    const held = /"releasedInput":(\d+)/.exec(server.output)?.[1] ?? '?';
    console.log(
      `LXD move ${from}→${to} with the browser attached (${held} input events held across the switch): API call ${wall} ms (total ${moved.body.totalMs} ms: setup ${moved.body.setupMs}, disk mirror ${moved.body.mirrorMs}, RAM ${moved.body.migrateMs}), guest downtime ${moved.body.downtimeMs} ms, longest gap between painted frames ${maxGap} ms`,
    );
    expect(maxGap).toBeLessThan(5_000);
  }, 600_000);
});
