/**
 * A VM desktop as a user sees it in the browser's viewer (the live migration tests): the
 * canvas read back as pixels, text typed as a US keyboard would, the guest shell's output
 * found on the canvas, and the viewer's states and painted frames watched over a move.
 */
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './browser.js';
import type { DesktopHandle } from '../../src/providers/types.js';
import { CELL_H, CELL_W, litPixels, screen } from './guest.js';
import type { PpmImage } from './qemu-console.js';
import { until } from './server.js';

export type ViewerWindow = Window & {
  __vdiViewer?: {
    framesDrawn: number;
    width: number;
    height: number;
    desktopId: string;
    sessionId: string;
  };
  __states?: string[];
  __frames?: { last: number; maxGap: number; track: boolean; drawn: number };
};

const UI_MS = 20_000;
/** "vdi-guest:/# " */
export const PROMPT_CELLS = 13;
const SHIFTED = new Set('~!@#$%^&*()_+{}|:"<>?');

/** Chromium with one page the viewer's size, counting the WebSockets the page opens. */
export async function viewerBrowser(): Promise<{
  browser: Browser;
  page: Page;
  sockets: { opened: number };
}> {
  const browser = await launchChromium();
  const page = await (
    await browser.newContext({ viewport: { width: 1280, height: 900 } })
  ).newPage();
  const sockets = { opened: 0 };
  page.on('websocket', () => sockets.opened++);
  return { browser, page, sockets };
}

export async function canvasImage(page: Page): Promise<PpmImage> {
  const { width, height, b64 } = await page.evaluate(() => {
    const c = document.querySelector<HTMLCanvasElement>('#screen')!;
    const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let bin = '';
    for (let i = 0; i < data.length; i += 4)
      bin += String.fromCharCode(data[i]!, data[i + 1]!, data[i + 2]!);
    return { width: c.width, height: c.height, b64: btoa(bin) };
  });
  return { width, height, rgb: Buffer.from(b64, 'base64') };
}

/** The lowest text row holding only a prompt; -1 when none. */
export function promptRow(img: PpmImage): number {
  for (let row = img.height / CELL_H - 1; row >= 0; row--) {
    if (litPixels(img, 0, row, 12, 1) > 100 && litPixels(img, 14, row, 80 - 14, 1) === 0)
      return row;
  }
  return -1;
}

export function cells(img: PpmImage, col0: number, row: number, cols: number): Buffer {
  const parts: Buffer[] = [];
  for (let y = row * CELL_H; y < (row + 1) * CELL_H; y++) {
    const start = (y * img.width + col0 * CELL_W) * 3;
    parts.push(img.rgb.subarray(start, start + cols * CELL_W * 3));
  }
  return Buffer.concat(parts);
}

/**
 * Types text into the canvas as a user on a US keyboard would: shifted characters with
 * Shift held (QEMU turns keysyms into scancodes and needs the Shift press).
 */
export async function typeText(page: Page, text: string, delay = 25): Promise<void> {
  await page.locator('#screen').focus();
  for (const c of text) {
    const shift = SHIFTED.has(c);
    if (shift) await page.keyboard.down('Shift');
    await page.keyboard.press(c);
    if (shift) await page.keyboard.up('Shift');
    await new Promise((r) => setTimeout(r, delay));
  }
}

export async function typeLine(page: Page, text: string): Promise<void> {
  await typeText(page, text);
  await page.keyboard.press('Enter');
}

/**
 * `echo <word>` typed into the canvas: its output row shows the same glyphs. The VM's own
 * screen (`h`: QEMU's screendump of a local VM, or any other way to see it) tells when the
 * screen was cleared.
 */
export async function echoShows(
  page: Page,
  h: DesktopHandle | (() => Promise<PpmImage>),
  word: string,
): Promise<void> {
  const shot = typeof h === 'function' ? h : () => screen(h);
  // The shell may report a killed job ("[1]+ Terminated ...") only after the next command,
  // i.e. below a cleared screen's top: clear again until the prompt is on top.
  for (let attempt = 1; ; attempt++) {
    await typeLine(page, 'clear');
    const cleared = await until(
      async () => promptRow(await shot()) === 0,
      attempt < 3 ? 5_000 : UI_MS,
      'a cleared screen',
      200,
    ).then(
      () => true,
      (err: unknown) => {
        if (attempt >= 3) throw err;
        return false;
      },
    );
    if (cleared) break;
  }
  await typeLine(page, `echo ${word}`);
  await until(
    async () => {
      const c = await canvasImage(page);
      return (
        litPixels(c, 0, 1, word.length, 1) > 0 &&
        cells(c, 0, 1, word.length).equals(cells(c, PROMPT_CELLS + 5, 0, word.length))
      );
    },
    UI_MS,
    `the output of echo ${word} on the canvas`,
    200,
  );
}

/** The viewer is connected and has painted a frame. */
export async function viewerConnected(page: Page, timeout = 60_000): Promise<void> {
  await page.waitForFunction(
    () =>
      document.body.dataset.viewer === 'connected' &&
      ((window as ViewerWindow).__vdiViewer?.framesDrawn ?? 0) > 0,
    null,
    { timeout },
  );
}

/**
 * From now on the page records every state the viewer passes through (`__states`) and the
 * longest time between two painted frames while `__frames.track` is set.
 */
export async function watchViewer(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as ViewerWindow;
    w.__states = [document.body.dataset.viewer ?? ''];
    new MutationObserver(() => {
      const s = document.body.dataset.viewer ?? '';
      if (w.__states!.at(-1) !== s) w.__states!.push(s);
    }).observe(document.body, { attributes: true, attributeFilter: ['data-viewer'] });
    const f = { last: performance.now(), maxGap: 0, track: false, drawn: 0 };
    w.__frames = f;
    const tick = () => {
      const drawn = w.__vdiViewer?.framesDrawn ?? 0;
      const now = performance.now();
      if (drawn !== f.drawn) {
        if (f.track) f.maxGap = Math.max(f.maxGap, now - f.last);
        f.last = now;
        f.drawn = drawn;
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

export const viewerStates = (page: Page): Promise<string[]> =>
  page.evaluate(() => (window as ViewerWindow).__states ?? []);

/** start timing the gaps between painted frames */
export const trackFrames = (page: Page): Promise<void> =>
  page.evaluate(() => {
    const f = (window as ViewerWindow).__frames!;
    f.track = true;
    f.maxGap = 0;
    f.last = performance.now();
  });

/** frames are painted again (within 500 ms of each other), then the longest gap while tracking */
export async function longestGap(page: Page): Promise<number> {
  await until(
    async () =>
      (await page.evaluate(() => performance.now() - (window as ViewerWindow).__frames!.last)) <
      500,
    UI_MS,
    'frames after the move',
  );
  return page.evaluate(() => {
    const f = (window as ViewerWindow).__frames!;
    f.track = false;
    return Math.round(f.maxGap);
  });
}

/** frames painted since the page started watching */
export const framesPainted = (page: Page): Promise<number> =>
  page.evaluate(() => (window as ViewerWindow).__frames!.drawn);
