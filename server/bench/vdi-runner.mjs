// This server, as an operator runs it (its own process, so its CPU and memory are its own;
// vdi-server.mjs wires it like server/dist/main.js), set up through the REST API only: a pool of provider `vnc` whose one
// host is the bench Xvnc's TCP port (the same X server noVNC watches), an entitlement for the
// bench admin, a session; then its viewer page `/desktop/<sessionId>` in Chromium.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { until } from './conditions.mjs';
import { freePort } from './desktop.mjs';
import { Codec, FrameFlags, decodeFrame } from '@vdi/shared';
import { openViewerPage } from './browser.mjs';
import { start } from './processes.mjs';

const ENTRY = path.join(import.meta.dirname, 'vdi-server.mjs');
const ADMIN_USER = 'bench';
const START_TIMEOUT_MS = 30_000;
const ATTACH_TIMEOUT_MS = 30_000;
/** The gateway's CSRF guard wants this header on state-changing calls (server/src/api/README.md). */
const CSRF_HEADER = { 'X-Requested-With': 'vdi' };

/**
 * A `vnc` pool host entry for `rfb` (desktop.mjs `rfbTarget`).
 * @param {{ socket?: string, port?: number }} rfb
 */
export function vncAddress(rfb) {
  return rfb.socket !== undefined ? { socket: rfb.socket } : { host: '127.0.0.1', port: rfb.port };
}

/**
 * @param {{ workDir: string, rfb: { socket: string } | { port: number } }} opts where the
 *   desktop's Xvnc listens (desktop.mjs `rfbTarget`)
 */
export async function startVdiServer({ workDir, rfb }) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const password = crypto.randomBytes(18).toString('base64url');
  // BENCH_SERVER_NODE_ARGS: extra node flags for the server, e.g. to profile it:
  // BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (written when it stops)
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = start('vdi server', process.execPath, [...nodeArgs, ENTRY], {
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: path.join(workDir, 'data'),
      RUN_DIR: path.join(workDir, 'run'),
      VDI_ADMIN_USER: ADMIN_USER,
      VDI_ADMIN_PASSWORD: password,
      DEFAULT_POOL: 'false',
      LOG_LEVEL: process.env.BENCH_SERVER_LOG_LEVEL ?? 'warn',
    },
  });
  // BENCH_SERVER_LOG=<file>: the server's whole output there (with BENCH_SERVER_LOG_LEVEL=info
  // it says when video regions start and end)
  if (process.env.BENCH_SERVER_LOG) {
    const file = fs.createWriteStream(process.env.BENCH_SERVER_LOG);
    child.stdout.pipe(file);
    child.stderr.pipe(file);
  }
  await until(
    'the VDI server to be ready',
    async () => {
      if (child.exitCode !== null)
        throw new Error(`the VDI server exited (${child.exitCode}): ${child.tail()}`);
      const r = await fetch(`${url}/readyz`).catch(() => undefined);
      return r?.status === 200;
    },
    START_TIMEOUT_MS,
  );

  let cookie = '';
  const api = async (method, p, body) => {
    const r = await fetch(`${url}${p}`, {
      method,
      headers: {
        ...CSRF_HEADER,
        ...(body ? { 'Content-Type': 'application/json' } : {}),
        ...(cookie ? { Cookie: cookie } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const setCookie = r.headers.get('set-cookie');
    if (setCookie) cookie = setCookie.split(';')[0];
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p}: HTTP ${r.status} ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) : undefined;
  };

  const login = await api('POST', '/api/auth/login', { username: ADMIN_USER, password });
  const me = login.user ?? login;
  const pool = await api('POST', '/api/admin/pools', {
    name: 'bench',
    description: 'the benchmark desktop (same Xvnc as noVNC)',
    provider: 'vnc',
    template: { hosts: [{ ...vncAddress(rfb), name: 'bench Xvnc' }] },
    assignment: 'floating',
    maxSize: 1,
    disconnectedTimeoutSec: 0,
  });
  await api('POST', '/api/admin/entitlements', {
    poolId: pool.id,
    principalType: 'user',
    principalId: me.id,
  });
  const { sessionId } = await until(
    'a session on the bench pool',
    () => api('POST', `/api/pools/${pool.id}/connect`),
    START_TIMEOUT_MS,
    500,
  );
  const [name, value] = cookie.split('=');

  return {
    name: 'this server',
    url,
    child,
    pid: child.pid,
    sessionId,
    viewerUrl: `${url}/desktop/${sessionId}`,
    cookies: [{ name, value, url }],
    /** the REST API as the signed-in bench admin, and its user id (capacity.mjs adds pools) */
    api,
    userId: me.id,
  };
}

/**
 * Open this server's viewer; resolves once it is attached and has painted the whole desktop.
 * @param {import('playwright-core').Browser} browser
 * @param {Awaited<ReturnType<typeof startVdiServer>>} srv
 * @param {{ width: number, height: number }} size the desktop's size
 * @param {{ countWithCdp?: boolean }} [opts]
 */
export async function openVdiViewer(browser, srv, size, opts = {}) {
  const tally = newTally();
  const viewer = await openViewerPage(browser, {
    url: srv.viewerUrl,
    cookies: srv.cookies,
    ...opts,
    onBinaryFrame: (buf) => count(tally, buf),
  });
  await until(
    "this server's viewer to attach and paint",
    () =>
      viewer.page.evaluate(
        ({ width, height }) =>
          document.body.dataset.viewer === 'connected' &&
          (window.__vdiViewer?.framesDrawn ?? 0) > 0 &&
          window.__vdiViewer.width === width &&
          window.__vdiViewer.height === height,
        size,
      ),
    ATTACH_TIMEOUT_MS,
    100,
  ).catch(async (err) => {
    const seen = await viewer.page
      .evaluate(() => ({ state: document.body.dataset.viewer, hooks: window.__vdiViewer }))
      .catch(() => ({}));
    await viewer.close();
    throw new Error(
      `${err.message}; viewer state "${seen.state}", hooks ${JSON.stringify(seen.hooks)}; ` +
        `page errors: ${viewer.errors.join(' | ') || 'none'}`,
    );
  });
  return {
    ...viewer,
    /** the client's own counters (window.__vdiViewer) */
    hooks: () => viewer.page.evaluate(() => ({ ...window.__vdiViewer })),
    /** what the frames so far were made of (a copy), from the frames CDP saw */
    codecs: () => structuredClone(tally),
  };
}

const CODEC_NAMES = Object.fromEntries(Object.entries(Codec).map(([name, id]) => [id, name]));

function newTally() {
  return {
    frames: 0,
    keyframes: 0,
    losslessFrames: 0,
    qualitySum: 0,
    lossyFrames: 0,
    undecodable: 0,
    byCodec: {},
  };
}

/** Count one binary message of this server's frame protocol (shared/src/frame.ts). */
function count(tally, buf) {
  let frame;
  try {
    frame = decodeFrame(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch {
    tally.undecodable++; // not a frame (a cursor image, a clipboard payload)
    return;
  }
  tally.frames++;
  if (frame.flags & FrameFlags.Keyframe) tally.keyframes++;
  if (frame.flags & FrameFlags.Lossless) tally.losslessFrames++;
  if (frame.rects.some((r) => r.codec === Codec.Jpeg)) {
    tally.lossyFrames++;
    tally.qualitySum += frame.quality;
  }
  for (const r of frame.rects) {
    const name = CODEC_NAMES[r.codec] ?? `codec${r.codec}`;
    const c = (tally.byCodec[name] ??= { rects: 0, bytes: 0, pixels: 0 });
    c.rects++;
    c.bytes += r.payload.byteLength;
    c.pixels += r.w * r.h;
  }
}
