// The reference: Debian's noVNC (/usr/share/novnc) served by Debian's websockify, which also
// bridges its WebSocket to the bench Xvnc's TCP port. Opened as `vnc_lite.html` with noVNC's
// defaults (autoconnect, no scaling, qualityLevel 6 and compressionLevel 2 in noVNC 1.3 →
// TigerVNC sends Tight with JPEG at its quality level 6; local cursor).
import { until } from './conditions.mjs';
import { freePort } from './desktop.mjs';
import { openViewerPage } from './browser.mjs';
import { start } from './processes.mjs';

export const NOVNC_DIR = process.env.NOVNC_DIR ?? '/usr/share/novnc';
const START_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 30_000;

/** @param {{ rfb: { socket?: string, port?: number } }} opts where the desktop's Xvnc listens */
export async function startWebsockify({ rfb }) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = start('websockify', 'websockify', [
    '--web',
    NOVNC_DIR,
    ...(rfb.socket !== undefined ? [`--unix-target=${rfb.socket}`] : []),
    `127.0.0.1:${port}`,
    ...(rfb.socket !== undefined ? [] : [`127.0.0.1:${rfb.port}`]),
  ]);
  await until(
    'websockify to serve noVNC',
    async () => {
      if (child.exitCode !== null)
        throw new Error(`websockify exited (${child.exitCode}): ${child.tail()}`);
      const r = await fetch(`${url}/vnc_lite.html`).catch(() => undefined);
      return r?.status === 200;
    },
    START_TIMEOUT_MS,
  );
  return { name: 'noVNC', url, child, pid: child.pid, viewerUrl: `${url}/vnc_lite.html` };
}

/**
 * Open noVNC; resolves once it is connected and has painted the whole desktop.
 * @param {import('playwright-core').Browser} browser
 * @param {Awaited<ReturnType<typeof startWebsockify>>} ws
 * @param {{ width: number, height: number }} size the desktop's size
 * @param {{ countWithCdp?: boolean }} [opts]
 */
export async function openNoVncViewer(browser, ws, size, opts = {}) {
  const viewer = await openViewerPage(browser, { url: ws.viewerUrl, ...opts });
  await until(
    'noVNC to connect and paint',
    () =>
      viewer.page.evaluate(({ width, height }) => {
        const status = document.getElementById('status')?.textContent ?? '';
        const snap = window.__bench.snapshot();
        return (
          /^Connected/.test(status) &&
          snap.draws > 0 &&
          snap.canvas?.width === width &&
          snap.canvas?.height === height
        );
      }, size),
    CONNECT_TIMEOUT_MS,
    100,
  ).catch(async (err) => {
    const seen = await viewer.page
      .evaluate(() => ({
        status: document.getElementById('status')?.textContent,
        probe: window.__bench.snapshot(),
      }))
      .catch(() => ({}));
    await viewer.close();
    throw new Error(
      `${err.message}; status "${seen.status}", canvas ${JSON.stringify(seen.probe?.canvas)}, ` +
        `${seen.probe?.draws} draws, ${seen.probe?.wsMessages} messages; page errors: ${viewer.errors.join(' | ') || 'none'}`,
    );
  });
  return { ...viewer, hooks: async () => null };
}
