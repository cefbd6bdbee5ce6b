// Headless Debian Chromium driven by playwright-core, one viewer page at a time, with
// - the page probe (page-probe.js) injected before the page's scripts,
// - bytes received counted from the Chrome DevTools Protocol (Network.webSocketFrameReceived:
//   text frames by their UTF-8 length, binary frames, which CDP hands over in base64, by their
//   decoded length),
// - the visible canvas read back losslessly (PNG) for the quality check.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { until } from './conditions.mjs';
import { onCleanup } from './processes.mjs';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Larger than the 1920x1080 desktop so neither viewer scales it (noVNC has a top bar). */
const VIEWPORT = { width: 1920, height: 1200 };
const PROBE_SCRIPT = path.join(import.meta.dirname, 'page-probe.js');

export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  onCleanup(() => browser.close());
  return browser;
}

/** Pids of the Chromium processes this bench launched (children of this Node process). */
export function browserRootPids() {
  const pids = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && /^chrom/i.test(comm)) pids.push(Number(name));
    } catch {
      /* exited */
    }
  }
  return pids;
}

function base64Bytes(s) {
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  return (s.length * 3) / 4 - pad;
}

/**
 * Open a viewer page with counters attached.
 * @param {import('playwright-core').Browser} browser
 * @param {{ url: string, cookies?: Array<{ name: string, value: string, url: string }>, countWithCdp?: boolean }} opts
 *   countWithCdp: false leaves the CDP Network domain off (it makes Chromium base64-encode every
 *   binary frame for us, work that grows with the bytes); the page's own count remains
 * @param {(payload: Buffer) => void} [opts.onBinaryFrame] sees each binary WebSocket frame
 *   received (CDP only)
 */
export async function openViewerPage(
  browser,
  { url, cookies, countWithCdp = true, onBinaryFrame },
) {
  const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  if (cookies?.length) await context.addCookies(cookies);
  await context.addInitScript({ path: PROBE_SCRIPT });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });

  const ws = { bytesIn: 0, framesIn: 0, bytesOut: 0, framesOut: 0, lastInAt: 0, urls: [] };
  const cdp = await context.newCDPSession(page);
  cdp.on('Network.webSocketCreated', (e) => ws.urls.push(e.url));
  cdp.on('Network.webSocketFrameReceived', (e) => {
    const { opcode, payloadData } = e.response;
    ws.bytesIn += opcode === 2 ? base64Bytes(payloadData) : Buffer.byteLength(payloadData, 'utf8');
    if (opcode === 2 && onBinaryFrame) onBinaryFrame(Buffer.from(payloadData, 'base64'));
    ws.framesIn++;
    ws.lastInAt = Date.now();
  });
  cdp.on('Network.webSocketFrameSent', (e) => {
    const { opcode, payloadData } = e.response;
    ws.bytesOut += opcode === 2 ? base64Bytes(payloadData) : Buffer.byteLength(payloadData, 'utf8');
    ws.framesOut++;
  });
  try {
    if (countWithCdp) await cdp.send('Network.enable');
    await page.goto(url);
  } catch (err) {
    await context.close();
    throw err;
  }

  return {
    page,
    errors,
    /** WebSocket traffic so far (a copy) */
    ws: () => ({ ...ws, urls: [...ws.urls] }),
    /**
     * Resolves once, for `quietMs`, no binary WebSocket message (picture data; this server's
     * viewer exchanges text heartbeats on a still screen) has reached the page and the page
     * has not drawn on its visible canvas: a viewer that is behind goes on drawing what it
     * has received after the last message (noVNC's receive queue). Returns when the last
     * message came and when the last draw was (Date.now()). The page's own count, so it also
     * works without CDP. With `giveUp`, a viewer still busy at `timeoutMs` is not an error:
     * the result then says `settled: false` (a viewer that never catches up, as noVNC during
     * a long window drag here, still has its measured phase's figures).
     */
    async quiet(quietMs, timeoutMs, { giveUp = false } = {}) {
      let last = { messageAt: 0, drawAt: 0 };
      const waiting = until(
        `${quietMs} ms without frames or drawing`,
        async () => {
          last = await page.evaluate(() => ({
            messageAt: window.__bench.lastMessageAt(),
            drawAt: window.__bench.lastDrawAt(),
          }));
          return (
            last.messageAt > 0 && Date.now() - Math.max(last.messageAt, last.drawAt) >= quietMs
          );
        },
        timeoutMs,
      );
      if (!giveUp) {
        await waiting;
        return last;
      }
      try {
        await waiting;
        return { ...last, settled: true };
      } catch {
        return { ...last, settled: false };
      }
    },
    probe: () => page.evaluate(() => window.__bench.snapshot()),
    resetProbe: () => page.evaluate(() => window.__bench.reset()),
    /** @param {{ x: number, y: number } | null} at */
    setClock: (at) => page.evaluate((a) => window.__bench.setClock(a), at),
    /** the visible canvas, RGBA */
    async grab() {
      const dataUrl = await page.evaluate(() => window.__bench.grab());
      if (!dataUrl) throw new Error('the viewer has not drawn anything');
      const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
      const { data, info } = await sharp(png)
        .ensureAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      return { width: info.width, height: info.height, rgba: data };
    },
    async close() {
      await context.close();
    },
  };
}
