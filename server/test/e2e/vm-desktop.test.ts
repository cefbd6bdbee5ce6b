/**
 * Issue 4 end to end: a real VM in real Chromium. The admin creates a qemu pool of the test
 * guest (infra/guest/build-guest.sh) through the REST API and entitles themselves, signs in
 * through the form, Connects, types `echo <token>` into the canvas and sees the output: the
 * canvas changes where the output goes and, once settled, matches a QMP screendump of the
 * VM pixel for pixel (text is always sent losslessly; only the blinking cursor may be in
 * another phase). Log off stops the VM and discards its linked clone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { QemuHandle } from '../../src/providers/qemu/handle.js';
import type { PpmImage } from '../helpers/qemu-console.js';
import { canvasImage, cells, PROMPT_CELLS } from '../helpers/vm-viewer.js';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { alive } from '../helpers/desktops.js';
import { ServerProcess, freePort, readStore } from '../helpers/process-server.js';
import { ADMIN, Api, until } from '../helpers/server.js';
import {
  atPrompt,
  buildGuest,
  CELL_H,
  CELL_W,
  litPixels,
  screen,
  sha256File,
  type GuestTemplate,
} from '../helpers/guest.js';

/** the viewer's test hook (client/src/viewer/test-hooks.ts) */
type ViewerWindow = Window & {
  __vdiViewer?: { framesDrawn: number; width: number; height: number; desktopId: string };
};

/** a TCG boot takes 4–7 s here */
const BOOT_TIMEOUT_MS = 60_000;
const UI_MS = 15_000;

/** The lowest text row holding only a prompt: where the shell waits; -1 when none. */
function promptRow(img: PpmImage): number {
  for (let row = img.height / CELL_H - 1; row >= 2; row--) {
    if (litPixels(img, 0, row, 12, 1) > 100 && litPixels(img, 14, row, 80 - 14, 1) === 0)
      return row;
  }
  return -1;
}

/** Bounding box of the pixels that differ between two images of the same size. */
function diffBox(
  a: PpmImage,
  b: PpmImage,
): { n: number; x0: number; y0: number; x1: number; y1: number } {
  const box = { n: 0, x0: Infinity, y0: Infinity, x1: -1, y1: -1 };
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      const i = (y * a.width + x) * 3;
      if (a.rgb[i] !== b.rgb[i] || a.rgb[i + 1] !== b.rgb[i + 1] || a.rgb[i + 2] !== b.rgb[i + 2]) {
        box.n++;
        box.x0 = Math.min(box.x0, x);
        box.y0 = Math.min(box.y0, y);
        box.x1 = Math.max(box.x1, x);
        box.y1 = Math.max(box.y1, y);
      }
    }
  }
  return box;
}

describe('a VM desktop in the browser', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-vm-e2e-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vvm-'));
  const token = `tok${randomBytes(4).toString('hex')}`;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let template: GuestTemplate;
  let goldenSha = '';
  let poolId = '';
  let vm: QemuHandle | undefined;

  const db = <T>(fn: (d: Database.Database) => T): T => readStore(dataDir, fn);
  /** what the page shows, for failure messages */
  const viewerState = () =>
    page.evaluate(
      () =>
        `${document.body.dataset.viewer ?? '?'}: ${document.querySelector('.viewer-end')?.textContent ?? ''}`,
    );

  /**
   * Waits until the canvas shows what the VM shows (a QMP screendump), pixel for pixel but
   * for the blinking cursor, whose cell after the prompt may be caught in the other phase.
   * Resolves to how many pixels differed.
   */
  const matchesScreen = async (h: QemuHandle): Promise<number> => {
    let last: ReturnType<typeof diffBox> | undefined;
    await until(
      async () => {
        const vmScreen = await screen(h);
        const canvas = await canvasImage(page);
        expect([canvas.width, canvas.height]).toEqual([vmScreen.width, vmScreen.height]);
        last = diffBox(canvas, vmScreen);
        const row = promptRow(vmScreen);
        const cursor = {
          x0: PROMPT_CELLS * CELL_W,
          y0: row * CELL_H,
          x1: (PROMPT_CELLS + 1) * CELL_W - 1,
          y1: (row + 1) * CELL_H - 1,
        };
        return (
          last.n === 0 ||
          (last.x0 >= cursor.x0 &&
            last.x1 <= cursor.x1 &&
            last.y0 >= cursor.y0 &&
            last.y1 <= cursor.y1)
        );
      },
      UI_MS,
      'the canvas to match the screendump',
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; last difference: ${JSON.stringify(last)}`);
    });
    return last!.n;
  };

  beforeAll(async () => {
    template = await buildGuest();
    goldenSha = await sha256File(template.image);
    server = new ServerProcess(await freePort(), {
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_POOL: 'false',
      BROKER_TICK_MS: '1000',
      QEMU_ACCEL: 'auto',
    });
    await server.start();
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  });

  afterEach((ctx) => {
    // the server's log tells why a step failed
    if (ctx.task.result?.state === 'fail') console.log(server?.output.slice(-6000));
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (vm && alive(vm.pid)) process.kill(-vm.pid, 'SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(runDir, { recursive: true, force: true });
  });

  it('the admin creates a qemu pool through the REST API and entitles themselves', async () => {
    const api = await new Api(server.url).login(ADMIN.username, ADMIN.password);
    const me = (await api.get('/api/auth/me')).body as { id: string };
    const pool = await api.post('/api/admin/pools', {
      name: 'Test VM',
      provider: 'qemu',
      assignment: 'floating',
      maxSize: 1,
      template,
    });
    expect(pool.status, JSON.stringify(pool.body)).toBe(201);
    poolId = pool.body.id;
    const ent = await api.post('/api/admin/entitlements', {
      poolId,
      principalType: 'user',
      principalId: me.id,
    });
    expect(ent.status).toBe(201);
    expect(
      ((await api.get('/api/desktops')).body as Array<{ poolId: string }>).map((d) => d.poolId),
    ).toEqual([poolId]);
  });

  it('signs in, connects the VM pool and types into the VM console; the output appears', async () => {
    const t0 = Date.now();
    await page.goto(server.url + '/');
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await openDesktop(page, page.getByRole('button', { name: /^(Connect|Resume)$/ }));
    await page.waitForFunction(
      () =>
        document.body.dataset.viewer === 'connected' &&
        ((window as ViewerWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
      null,
      { timeout: 30_000 },
    );
    const desktopId = await page.evaluate(() => (window as ViewerWindow).__vdiViewer!.desktopId);
    vm = JSON.parse(
      db(
        (d) =>
          (
            d.prepare('select handle from desktops where id = ?').get(desktopId) as {
              handle: string;
            }
          ).handle,
      ),
    ) as QemuHandle;
    const h = vm;

    await until(() => atPrompt(h), BOOT_TIMEOUT_MS, "the guest's prompt");
    console.log(`sign-in → guest at its prompt: ${Date.now() - t0} ms (${h.accel})`);
    await until(
      async () =>
        (
          await page.evaluate(() => [
            (window as ViewerWindow).__vdiViewer!.width,
            (window as ViewerWindow).__vdiViewer!.height,
          ])
        ).join() === '720,400',
      UI_MS,
      'the canvas at VGA text size',
    );
    const row = promptRow(await screen(h));
    expect(row).toBeGreaterThanOrEqual(2);
    // the canvas shows the prompt too, and nothing yet where the output will go
    await until(
      async () => promptRow(await canvasImage(page)) === row,
      UI_MS,
      'the prompt on the canvas',
    );
    expect(litPixels(await canvasImage(page), 0, row + 1, 80, 1)).toBe(0);

    await page.locator('#screen').focus();
    await page.keyboard.type(`echo ${token}`, { delay: 20 });
    await page.keyboard.press('Enter');
    const typedAt = Date.now();
    // the output row lights up on the canvas: the token's glyphs, as typed on the line above
    await until(
      async () => {
        const c = await canvasImage(page);
        return (
          litPixels(c, 0, row + 1, token.length, 1) > 0 &&
          cells(c, 0, row + 1, token.length).equals(cells(c, PROMPT_CELLS + 5, row, token.length))
        );
      },
      UI_MS,
      'the output of echo on the canvas',
    ).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; viewer ${await viewerState()}`);
    });
    console.log(`Enter → output on the canvas: ${Date.now() - typedAt} ms`);
    const c = await canvasImage(page);
    expect(litPixels(c, token.length, row + 1, 80 - token.length, 1)).toBe(0);

    // settled: the canvas is the VM's screen, pixel for pixel
    console.log(
      `canvas vs screendump after echo: ${await matchesScreen(h)} pixels differ (cursor cell only)`,
    );

    // a screenful that scrolls: moved text must land exactly where the VM has it
    await page.keyboard.type('seq 1 40', { delay: 20 });
    await page.keyboard.press('Enter');
    await until(
      async () => promptRow(await screen(h)) === 400 / CELL_H - 1,
      UI_MS,
      'the prompt at the bottom after scrolling',
    );
    console.log(
      `canvas vs screendump after scrolling: ${await matchesScreen(h)} pixels differ (cursor cell only)`,
    );
  });

  it('the admin console says how the VM runs (KVM or TCG)', async () => {
    const admin = await page.context().newPage();
    try {
      await admin.goto(`${server.url}/admin/sessions`);
      const row = admin.locator('tr', { hasText: 'Test VM' }).first();
      await row.waitFor({ timeout: UI_MS });
      await until(
        async () => /· (KVM|TCG)/.test(await row.innerText()),
        UI_MS,
        'the acceleration in the sessions table',
      );
    } finally {
      await admin.close();
    }
  });

  it('Log off stops the VM and discards its linked clone; the golden image is untouched', async () => {
    const h = vm!;
    // the faded toolbar comes back near the top edge; log off asks first
    await page.mouse.move(12, 4);
    await page.getByRole('button', { name: 'Log off' }).click();
    await page
      .getByRole('dialog', { name: 'Log off?' })
      .getByRole('button', { name: 'Log off' })
      .click();
    await page.waitForFunction(() => document.body.dataset.viewer === 'ended', null, {
      timeout: UI_MS,
    });
    await until(() => !alive(h.pid), UI_MS, 'the VM to stop');
    await until(() => !fs.existsSync(h.overlayPath), UI_MS, 'the overlay to go');
    expect(await sha256File(template.image)).toBe(goldenSha);
  });
});
