/**
 * Issue 12 end to end: live migration of a VM desktop in real Chromium, the browser never
 * reconnecting. The server runs as host h1 and serves h2 and h3 as other hosts on this
 * machine (separate QEMU processes with their own files). The admin signs in, connects a
 * VM desktop, starts a counter printing in the guest's console, types a command while the
 * desktop moves through the admin API, and the test asserts: no new WebSocket and no
 * "Reconnecting" state, the longest gap between painted frames, the keys typed during the
 * move all reached the guest (the command ran, on the moved disk), the guest clock did not
 * jump, the source QEMU is gone, and the canvas shows the destination's screen pixel for
 * pixel. A move whose destination is killed mid-way leaves the VM running at the source,
 * the viewer attached; draining a host moves two desktops.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { QemuHandle } from '../../src/providers/qemu/handle.js';
import { qmpExecute } from '../../src/providers/qemu/qmp-client.js';
import type { PpmImage } from '../helpers/qemu-console.js';
import { openDesktop, signIn } from '../helpers/browser.js';
import {
  canvasImage,
  echoShows as echoOn,
  framesPainted,
  longestGap,
  PROMPT_CELLS,
  promptRow,
  trackFrames,
  typeLine as typeLineOn,
  typeText as typeTextOn,
  viewerConnected,
  viewerStates,
  watchViewer,
  viewerBrowser,
  type ViewerWindow,
} from '../helpers/vm-viewer.js';
import { alive, killMovedVms, pidInFile } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, Api, until } from '../helpers/server.js';
import {
  atPrompt,
  buildGuest,
  CELL_H,
  CELL_W,
  readGuestFile,
  screen,
  type GuestTemplate,
} from '../helpers/guest.js';

const BOOT_TIMEOUT_MS = 90_000;
const UI_MS = 20_000;
/** how soon the canvas must match the VM's screen exactly once the screen is still, ms */
const EXACT_MS = 1_500;

/** where pixels last differed (for failure messages) */
let lastDiff = { x0: Infinity, y0: Infinity, x1: -1, y1: -1 };

/** how many pixels differ, outside the cursor cell after the prompt on `row` */
function diffOutsideCursor(a: PpmImage, b: PpmImage, row: number): number {
  let n = 0;
  lastDiff = { x0: Infinity, y0: Infinity, x1: -1, y1: -1 };
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      const i = (y * a.width + x) * 3;
      if (a.rgb[i] === b.rgb[i] && a.rgb[i + 1] === b.rgb[i + 1] && a.rgb[i + 2] === b.rgb[i + 2])
        continue;
      const inCursor = Math.floor(y / CELL_H) === row && Math.floor(x / CELL_W) === PROMPT_CELLS;
      if (inCursor) continue;
      n++;
      lastDiff = {
        x0: Math.min(lastDiff.x0, x),
        y0: Math.min(lastDiff.y0, y),
        x1: Math.max(lastDiff.x1, x),
        y1: Math.max(lastDiff.y1, y),
      };
    }
  }
  return n;
}

describe('live migration of a VM desktop with the browser attached', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-mig-e2e-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmg-'));
  const token = `t${randomBytes(3).toString('hex')}`;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let api: Api;
  let template: GuestTemplate;
  let desktopId = '';
  let sockets = { opened: 0 };
  const pids = new Set<number>();

  const db = <T>(fn: (d: Database.Database) => T): T => readStore(dataDir, fn);
  const row = (id: string) =>
    db(
      (d) =>
        d.prepare('select state, host, handle, error from desktops where id = ?').get(id) as {
          state: string;
          host: string | null;
          handle: string;
          error: string | null;
        },
    );
  const handleOf = (id: string): QemuHandle => {
    const h = JSON.parse(row(id).handle) as QemuHandle;
    pids.add(h.pid);
    return h;
  };
  const states = () => viewerStates(page);
  const move = (id: string, host: string) =>
    api.post(`/api/admin/desktops/${id}/move`, { host }) as unknown as Promise<{
      status: number;
      body: Record<string, unknown>;
      error?: { code: string; message: string };
    }>;

  const typeText = (text: string, delay?: number) => typeTextOn(page, text, delay);
  const typeLine = (text: string) => typeLineOn(page, text);

  /**
   * the canvas shows the VM's screen exactly, the cursor cell apart, within `ms`; resolves
   * with the prompt row
   */
  const canvasMatches = async (h: QemuHandle, ms = UI_MS): Promise<number> => {
    let last = -1;
    let promptAt = -1;
    await until(
      async () => {
        const vm = await screen(h);
        const canvas = await canvasImage(page);
        if (canvas.width !== vm.width || canvas.height !== vm.height) return false;
        promptAt = promptRow(vm);
        last = diffOutsideCursor(canvas, vm, promptAt);
        return last === 0;
      },
      ms,
      'the canvas to match the VM screen',
      100,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; ${last} pixels differed in ${JSON.stringify(lastDiff)}`);
    });
    return promptAt;
  };

  const echoShows = (h: QemuHandle, word: string) => echoOn(page, h, word);

  beforeAll(async () => {
    template = await buildGuest();
    // the VMs' accounts walk through the run dir to their move's sockets
    fs.chmodSync(runDir, 0o711);
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_POOL: 'false',
      BROKER_TICK_MS: '1000',
      QEMU_ACCEL: 'auto',
      HOST_NAME: 'h1',
      LOCAL_HOSTS: 'h2,h3',
      DRAIN_CONCURRENCY: '2',
    });
    await server.start();
    api = await new Api(server.url).login(ADMIN.username, ADMIN.password);
    await api.entitledPool({
      name: 'Moving VM',
      provider: 'qemu',
      assignment: 'floating',
      maxSize: 2,
      spares: 1,
      template,
    });
    ({ browser, page, sockets } = await viewerBrowser());
  }, 240_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(server?.output.slice(-8000));
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    for (const pid of pids) if (alive(pid)) process.kill(-pid, 'SIGKILL');
    // destinations of failed or interrupted moves
    killMovedVms(runDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(runDir, { recursive: true, force: true });
  });

  it('moves the VM to another host while the user types; no reconnect, no key lost', async () => {
    await signIn(page, server.url + '/', ADMIN);
    await openDesktop(page, page.getByRole('button', { name: 'Connect' }), 60_000);
    await viewerConnected(page);
    desktopId = await page.evaluate(() => (window as ViewerWindow).__vdiViewer!.desktopId);
    const src = handleOf(desktopId);
    expect(row(desktopId).host).toBe('h1');
    await until(() => atPrompt(src), BOOT_TIMEOUT_MS, "the guest's prompt", 250);
    await watchViewer(page);
    const socketsBefore = sockets.opened;
    expect(socketsBefore).toBeGreaterThan(0);

    // a counter printing in the guest's console, in the background: the screen changes
    // five times a second and the shell still reads what is typed
    await typeLine('(i=0; while :; do i=$((i+1)); echo n$i; sleep 0.2; done) &');
    await until(async () => (await framesPainted(page)) > 20, UI_MS, 'the counter painting frames');
    await trackFrames(page);

    // the move, and a command typed across it (its keys land before, during and after)
    const t0 = Date.now();
    const moving = move(desktopId, 'h2');
    const typing = typeText(`echo mv${token} $(date +%s) > /data/k; sync`, 40);
    // meanwhile the move owns the desktop: a log-off or a second move is refused
    await until(() => row(desktopId).state === 'migrating', 10_000, 'the migrating state', 5);
    const sessionId = await page.evaluate(
      () => (window as unknown as { __vdiViewer: { sessionId: string } }).__vdiViewer.sessionId,
    );
    const logoff = await api.post(`/api/admin/sessions/${sessionId}/logoff`);
    const again = await move(desktopId, 'h3');
    await typing;
    const moved = await moving;
    expect(logoff.status).toBe(409);
    expect(logoff.error?.code).toBe('MIGRATING');
    expect(again.status).toBe(409);
    expect(again.error?.message).toMatch(/being moved to host h2/);
    const enterAt = Date.now();
    await page.keyboard.press('Enter');
    const wall = Date.now() - t0;
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body).toMatchObject({ desktopId, from: 'h1', to: 'h2' });
    // frames after the switch count too
    const maxGap = await longestGap(page);

    const dest = handleOf(desktopId);
    expect(dest.host).toBe('h2');
    expect(row(desktopId)).toMatchObject({ state: 'in-use', host: 'h2', error: null });
    expect(dest.pid).not.toBe(src.pid);
    await until(() => !alive(src.pid), 10_000, 'the source QEMU to be gone');
    expect(fs.existsSync(src.overlayPath)).toBe(false);

    // every key typed across the move reached the guest, in order: the command ran
    const k = await until(
      // read until whole: a read racing the guest's sync may see the inode before its data
      async () => {
        const text = (await readGuestFile(dest.overlayPath, '/k'))?.trim();
        return text !== undefined && /^\S+ \d+$/.test(text) ? text : undefined;
      },
      UI_MS,
      'the command typed during the move to write its file',
      500,
    ).catch(async (err: unknown) => {
      const shot = path.join(os.tmpdir(), `vdi-migration-failure-${Date.now()}.png`);
      await page.screenshot({ path: shot });
      throw new Error(`${String(err)} (the page: ${shot})`);
    });
    const [word, epoch] = k.split(' ');
    expect(word).toBe(`mv${token}`);
    // the guest's clock kept the host's time across the move (it did not stop or jump)
    const skew = Number(epoch) - enterAt / 1000;
    expect(Math.abs(skew)).toBeLessThan(5);

    // the same socket all along: no new WebSocket, never "reconnecting"
    expect(sockets.opened).toBe(socketsBefore);
    expect(await states()).not.toContain('reconnecting');
    expect(await states()).not.toContain('desktop-lost');
    expect(await page.locator('.viewer-overlay').isVisible()).toBe(false);

    // the counter keeps counting on the canvas, drawn by the destination
    const c1 = await canvasImage(page);
    await until(
      async () => !(await canvasImage(page)).rgb.equals(c1.rgb),
      UI_MS,
      'the counter to keep changing the canvas',
    );
    const stats = moved.body as Record<string, number>;
    // the switch's wait for the destination's screen, from the server's log
    const screenMs = /"screenMs":(\d+)/.exec(server.output)?.[1] ?? '?';
    console.log(
      `move h1→h2 with the browser attached: API call ${wall} ms (QEMU total ${stats.totalMs} ms: setup ${stats.setupMs}, disk mirror ${stats.mirrorMs}, RAM ${stats.migrateMs}), guest downtime (QMP) ${stats.downtimeMs} ms, switch waited ${screenMs} ms for the destination's screen, longest gap between painted frames ${maxGap} ms, guest clock skew ${skew.toFixed(1)} s, RAM sent ${stats.ramBytes} bytes, ${dest.accel}`,
    );
    expect(maxGap).toBeLessThan(5_000);

    // stop the counter; typed text reaches the guest and the canvas is its screen
    await typeLine('kill $!');
    await echoShows(dest, token);
    // the whole canvas is the VM's screen, pixel for pixel, once the echo shows: nothing
    // of the switch (issue 12: stale blocks, once ~800 px) is left behind
    await canvasMatches(dest, EXACT_MS);
  }, 240_000);

  it('a destination killed mid-way: the VM keeps running at the source, viewer attached', async () => {
    const before = handleOf(desktopId);
    const socketsBefore = sockets.opened;
    const pidFile = path.join(runDir, 'qemu', '@h3', `${desktopId}.pid`);
    const stateSocket = path.join(runDir, 'qemu-migrate', desktopId, 'state.sock');
    const moving = move(desktopId, 'h3');
    // kill the destination mid-way: once it runs and waits for the VM's state
    const destPid = await until(
      () => (fs.existsSync(stateSocket) ? pidInFile(pidFile) : undefined),
      30_000,
      'the destination QEMU',
      5,
    );
    process.kill(destPid, 'SIGKILL');
    const r = await moving;
    expect(r.status).toBe(502);
    expect(r.error?.code).toBe('MOVE_FAILED');
    expect(r.error?.message).toMatch(/still runs on h2/);
    expect(row(desktopId)).toMatchObject({ state: 'in-use', host: 'h2' });
    expect(row(desktopId).error).toMatch(/move to h3 failed/);
    const after = handleOf(desktopId);
    expect(after.pid).toBe(before.pid);
    expect(alive(before.pid)).toBe(true);
    await until(() => !alive(destPid), 10_000, 'the destination to be gone');
    // the viewer never left: same socket, and the VM answers what is typed
    await echoShows(before, `${token}x`);
    expect(sockets.opened).toBe(socketsBefore);
    expect(await states()).not.toContain('reconnecting');
    console.log(`failed move to h3: ${r.error?.message}`);
  }, 120_000);

  it('draining a host moves its two desktops', async () => {
    // the pool's spare (started on h1) joins the viewed desktop on h2 first
    const spare = await until(
      () =>
        db(
          (d) =>
            d
              .prepare("select id from desktops where state = 'ready' and id <> ?")
              .get(desktopId) as { id: string } | undefined,
        ),
      BOOT_TIMEOUT_MS,
      'the warm spare',
    );
    handleOf(spare.id);
    const m = await move(spare.id, 'h2');
    expect(m.status, JSON.stringify(m.body)).toBe(200);
    const socketsBefore = sockets.opened;

    const r = (await api.post('/api/admin/hosts/h2/drain', { to: 'h1' })) as unknown as {
      status: number;
      body: { moved: number; failed: number; results: Array<{ desktopId: string; ok: boolean }> };
    };
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ moved: 2, failed: 0 });
    expect(r.body.results.map((x) => x.desktopId).sort()).toEqual([desktopId, spare.id].sort());
    for (const id of [desktopId, spare.id]) {
      expect(row(id).host).toBe('h1');
      const h = handleOf(id);
      expect(h.host).toBeUndefined();
      expect(alive(h.pid)).toBe(true);
    }
    // the viewed one still shows in the same socket
    await echoShows(handleOf(desktopId), `${token}d`);
    expect(sockets.opened).toBe(socketsBefore);
    const audit = (await api.get('/api/admin/audit?action=host.drain')).body as Array<{
      target: string;
    }>;
    expect(audit.map((a) => a.target)).toContain('h2');
    const moves = (await api.get(`/api/admin/audit?action=desktop.move`)).body as unknown[];
    expect(moves.length).toBeGreaterThanOrEqual(4);
  }, 240_000);

  it("the admin console's Move moves the viewed desktop; the viewer stays", async () => {
    const socketsBefore = sockets.opened;
    const admin = await page.context().newPage();
    try {
      await admin.goto(`${server.url}/admin/sessions`);
      const tr = admin.locator('tr', { hasText: 'Moving VM' }).first();
      await tr.waitFor({ timeout: UI_MS });
      await tr.getByRole('button', { name: 'Move' }).click();
      const dialog = admin.getByRole('dialog');
      const hosts = dialog.getByLabel('Destination host');
      // the desktop runs on h1: the other hosts are offered
      await until(
        async () => (await hosts.locator('option').allTextContents()).join() === 'h2,h3',
        UI_MS,
        'the hosts in the Move dialog',
      );
      await hosts.selectOption('h3');
      await dialog.getByRole('button', { name: 'Move now' }).click();
      await dialog.waitFor({ state: 'detached', timeout: 60_000 });
      await admin.getByText(/moved to h3 in/).waitFor({ timeout: UI_MS });
    } finally {
      await admin.close();
    }
    expect(row(desktopId)).toMatchObject({ state: 'in-use', host: 'h3' });
    const h = handleOf(desktopId);
    expect(h.host).toBe('h3');
    await echoShows(h, `${token}u`);
    expect(sockets.opened).toBe(socketsBefore);
    expect(await states()).not.toContain('reconnecting');

    // logging off a desktop that now runs on h3 (another host this machine serves) stops it
    const sessionId = await page.evaluate(
      () => (window as unknown as { __vdiViewer: { sessionId: string } }).__vdiViewer.sessionId,
    );
    const off = await api.post(`/api/admin/sessions/${sessionId}/logoff`);
    expect(off.status, JSON.stringify(off.body)).toBe(204);
    await until(() => !alive(h.pid), UI_MS, 'the moved QEMU to stop at log off');
  }, 120_000);

  it('a server killed mid-move finds the VM at its source at restart, running and movable', async () => {
    const spare = db(
      (d) =>
        d.prepare("select id from desktops where state = 'ready'").get() as
          { id: string } | undefined,
    );
    expect(spare).toBeDefined();
    const id = spare!.id;
    const src = handleOf(id);
    expect(src.host).toBeUndefined();
    const hostBefore = row(id).host;
    // a slower RAM copy, so that the server dies while it runs
    await server.stop();
    server.env.MIGRATION_MAX_BANDWIDTH_MIBPS = '32';
    await server.start();
    api = await new Api(server.url).login(ADMIN.username, ADMIN.password);
    const moving = move(id, 'h2').catch(() => undefined);
    const pidFile = path.join(runDir, 'qemu', '@h2', `${id}.pid`);
    const destPid = await until(() => pidInFile(pidFile), 60_000, 'the destination QEMU', 5);
    // the memory stream running: the source has connected to the destination's socket
    const stateSocket = path.join(runDir, 'qemu-migrate', id, 'state.sock');
    await until(
      () =>
        fs
          .readFileSync('/proc/net/unix', 'utf8')
          .split('\n')
          .filter((l) => l.endsWith(` ${stateSocket}`)).length > 1,
      60_000,
      'the memory stream',
      5,
    );
    await server.stop('SIGKILL');
    await moving;
    // QEMU carries on alone: the copy ends, the source pauses before the switch, and waits
    const alone = await until(
      async () => {
        const m = await qmpExecute<{ status: string }>(src.qmpPath, 'query-migrate');
        return m.status === 'pre-switchover' ? m.status : undefined;
      },
      60_000,
      'the source to wait before the switch',
      100,
    );
    expect(alone).toBe('pre-switchover');
    expect(await qmpExecute<{ status: string }>(src.qmpPath, 'query-status')).toMatchObject({
      status: 'finish-migrate',
    });

    await server.start();
    // the desktop is where it was, running, the destination gone, the row saying why
    await until(() => row(id).state === 'ready', 30_000, 'the desktop reconciled');
    expect(row(id).host).toBe(hostBefore);
    expect(row(id).error).toMatch(/interrupted/);
    expect(handleOf(id).pid).toBe(src.pid);
    expect(await qmpExecute<{ status: string }>(src.qmpPath, 'query-status')).toMatchObject({
      status: 'running',
    });
    await until(() => !alive(destPid), 10_000, 'the unrecorded destination to be swept');
    // nothing of the old move is left in QEMU: the next move goes through
    api = await new Api(server.url).login(ADMIN.username, ADMIN.password);
    const again = await move(id, 'h2');
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(row(id)).toMatchObject({ state: 'ready', host: 'h2', error: null });
  }, 240_000);
});
