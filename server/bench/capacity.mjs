// `npm run bench -- capacity`: how many desktops with a typing user one core carries, gateway
// and Xvnc together (issue 10). For each count N (1, 4, 16, 32 unless --counts says), it starts
// N Xvnc desktops (openbox, an xterm running `cat`), one pool of provider `vnc` per desktop on
// one server process, and per desktop a headless viewer: a Socket.IO client in this process
// that acknowledges every frame as soon as it arrives (what the browser does once it has
// drawn it). xdotool types 10 characters a second into every desktop; after a warm-up the
// CPU of the gateway process and of every Xvnc is read from /proc over the measured phase.
// desktops per core = N / (CPU seconds per second of gateway + Xvnc).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { vdiParser } from '@vdi/shared';
import { until } from './conditions.mjs';
import { rfbTarget, startDesktop } from './desktop.mjs';
import { cpuDelta, cpuSample, rssMiB } from './metrics.mjs';
import { installCleanup, onCleanup, start, stop, stopAll } from './processes.mjs';
import { startVdiServer, vncAddress } from './vdi-runner.mjs';

const DESKTOP = { width: 1280, height: 800 };
const TYPING_CPS = 10;
const ATTACH_TIMEOUT_MS = 30_000;
const TEXT = 'the quick brown fox jumps over the lazy dog 0123456789 ';

const log = (msg) => process.stdout.write(`[capacity] ${msg}\n`);

function parseArgs(argv) {
  const opts = { counts: [1, 4, 16, 32], seconds: 10, warmupSeconds: 3, rfb: 'unix' };
  for (const a of argv) {
    const m = a.match(/^--([a-z-]+)=(.+)$/);
    if (!m) throw new Error(`unknown argument ${a}`);
    const [, k, v] = m;
    if (k === 'counts') opts.counts = v.split(',').map(Number);
    else if (k === 'seconds') opts.seconds = Number(v);
    else if (k === 'warmup-seconds') opts.warmupSeconds = Number(v);
    else if (k === 'rfb' && (v === 'unix' || v === 'tcp')) opts.rfb = v;
    else
      throw new Error(
        `unknown option --${k} (capacity takes --counts, --seconds, --warmup-seconds, --rfb=unix|tcp)`,
      );
  }
  if (opts.counts.some((n) => !(n >= 1)) || !(opts.seconds > 0))
    throw new Error('--counts are positive integers, --seconds a positive number');
  return opts;
}

/** A headless viewer: attaches to the session and acks each frame when it arrives. */
async function ackingViewer(srv, sessionId) {
  const socket = io(srv.url, {
    parser: vdiParser,
    transports: ['websocket'],
    extraHeaders: { Cookie: `${srv.cookies[0].name}=${srv.cookies[0].value}` },
    reconnection: false,
    forceNew: true,
  });
  const got = { frames: 0, bytes: 0 };
  socket.on('frame', (data) => {
    got.frames++;
    got.bytes += data.byteLength ?? data.length ?? 0;
    // the frame's sequence number: u32 little-endian at byte 4 (shared/src/frame.ts)
    const u8 = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    const seq = new DataView(u8.buffer, u8.byteOffset, u8.byteLength).getUint32(4, true);
    socket.emit('ack', { seq });
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('a viewer could not attach')),
      ATTACH_TIMEOUT_MS,
    );
    socket.once('connect', () =>
      socket.emit('attach', { sessionId }, (res) => {
        clearTimeout(timer);
        if (res?.ok) resolve();
        else reject(new Error(`attach failed: ${res?.code} ${res?.message}`));
      }),
    );
    socket.once('connect_error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  return { got, close: () => socket.close() };
}

/** A pool of provider `vnc` for one more desktop, entitled to the bench admin; its session. */
async function addSession(srv, rfb, i) {
  const pool = await srv.api('POST', '/api/admin/pools', {
    name: `capacity-${i}`,
    provider: 'vnc',
    template: { hosts: [{ ...vncAddress(rfb), name: `capacity Xvnc ${i}` }] },
    assignment: 'floating',
    maxSize: 1,
    disconnectedTimeoutSec: 0,
  });
  await srv.api('POST', '/api/admin/entitlements', {
    poolId: pool.id,
    principalType: 'user',
    principalId: srv.userId,
  });
  const { sessionId } = await until(
    `a session on desktop ${i}`,
    () => srv.api('POST', `/api/pools/${pool.id}/connect`),
    30_000,
    500,
  );
  return sessionId;
}

async function measureCount(n, opts, workDir) {
  const dir = fs.mkdtempSync(path.join(workDir, `n${n}-`));
  const desks = [];
  const children = [];
  let srv;
  const viewers = [];
  try {
    for (let i = 0; i < n; i++) {
      const d = await startDesktop({ workDir: path.join(dir, `d${i}`), ...DESKTOP, benchX: '' });
      desks.push(d);
      children.push(d.xvnc, d.wm);
      const win = await d.xterm({
        title: `capacity-${i}`,
        cols: 90,
        rows: 30,
        x: 60,
        y: 60,
        command: ['sh', '-c', 'exec cat >/dev/null'],
      });
      children.push(win.child);
    }
    srv = await startVdiServer({ workDir: dir, rfb: rfbTarget(desks[0], opts.rfb) });
    children.push(srv.child);
    const sessions = [srv.sessionId];
    for (let i = 1; i < n; i++)
      sessions.push(await addSession(srv, rfbTarget(desks[i], opts.rfb), i));
    for (const s of sessions) viewers.push(await ackingViewer(srv, s));
    log(`N=${n}: ${n} desktops ${DESKTOP.width}x${DESKTOP.height}, viewers attached`);

    const total = opts.warmupSeconds + opts.seconds + 2;
    const text = TEXT.repeat(Math.ceil((total * TYPING_CPS) / TEXT.length)).slice(
      0,
      total * TYPING_CPS,
    );
    const typists = desks.map((d, i) =>
      start(`xdotool ${i}`, 'xdotool', ['type', '--delay', String(1000 / TYPING_CPS), text], {
        env: d.env,
      }),
    );
    children.push(...typists);
    await new Promise((r) => setTimeout(r, opts.warmupSeconds * 1000));
    const xvncPids = desks.map((d) => d.xvnc.pid);
    const before = { gw: cpuSample([srv.pid]), x: cpuSample(xvncPids), at: Date.now() };
    const got0 = viewers.map((v) => ({ ...v.got }));
    await new Promise((r) => setTimeout(r, opts.seconds * 1000));
    const secs = (Date.now() - before.at) / 1000;
    const gatewayCpu = cpuDelta(before.gw, cpuSample([srv.pid])) / secs;
    const xvncCpu = cpuDelta(before.x, cpuSample(xvncPids)) / secs;
    const frames = viewers.reduce((a, v, i) => a + v.got.frames - got0[i].frames, 0) / secs / n;
    const kbit =
      (viewers.reduce((a, v, i) => a + v.got.bytes - got0[i].bytes, 0) * 8) / 1000 / secs / n;
    const r = {
      desktops: n,
      gatewayCorePct: gatewayCpu * 100,
      xvncCorePct: xvncCpu * 100,
      desktopsPerCore: n / (gatewayCpu + xvncCpu),
      gatewayOnlyDesktopsPerCore: n / gatewayCpu,
      framesPerSecPerViewer: frames,
      kbitPerSecPerViewer: kbit,
      // per frame sent: what a keystroke costs, whatever the machine managed to type
      gatewayMsPerFrame: (gatewayCpu * 1000) / (frames * n),
      xvncMsPerFrame: (xvncCpu * 1000) / (frames * n),
      gatewayRssMiB: rssMiB(srv.pid),
      loadAverage: os.loadavg()[0],
    };
    log(
      `N=${n}: gateway ${r.gatewayCorePct.toFixed(1)} % + Xvnc ${r.xvncCorePct.toFixed(1)} % of a core → ` +
        `${r.desktopsPerCore.toFixed(0)} desktops/core; ${frames.toFixed(1)} frames/s and ` +
        `${kbit.toFixed(0)} kbit/s per viewer; RSS ${r.gatewayRssMiB.toFixed(0)} MiB; load ${r.loadAverage.toFixed(2)}`,
    );
    return r;
  } finally {
    for (const v of viewers) v.close();
    for (const c of children.reverse()) await stop(c);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function renderTable(results) {
  const lines = [
    '| desktops | gateway % of a core | Xvnc % of a core | desktops per core (gateway + Xvnc) | desktops per core (gateway only) | frames/s per viewer | gateway ms per frame | Xvnc ms per frame | kbit/s per viewer | gateway RSS MiB | load avg |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  // with 10 keys/s every desktop should send about as many frames as a lone one does; far
  // fewer means the typists did not get the CPU to type (the machine is saturated)
  const alone = results[0]?.framesPerSecPerViewer ?? 0;
  for (const r of results) {
    const starved = r.framesPerSecPerViewer < 0.8 * alone ? ' (typing starved)' : '';
    lines.push(
      `| ${r.desktops} | ${r.gatewayCorePct.toFixed(1)} | ${r.xvncCorePct.toFixed(1)} | ${r.desktopsPerCore.toFixed(0)}${starved} | ${r.gatewayOnlyDesktopsPerCore.toFixed(0)}${starved} | ${r.framesPerSecPerViewer.toFixed(1)} | ${r.gatewayMsPerFrame.toFixed(2)} | ${r.xvncMsPerFrame.toFixed(2)} | ${r.kbitPerSecPerViewer.toFixed(1)} | ${r.gatewayRssMiB.toFixed(0)} | ${r.loadAverage.toFixed(2)} |`,
    );
  }
  return lines.join('\n');
}

export async function capacity(argv) {
  installCleanup();
  const opts = parseArgs(argv);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-capacity-'));
  onCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }), 'after');
  try {
    const results = [];
    for (const n of opts.counts) results.push(await measureCount(n, opts, workDir));
    const table = renderTable(results);
    const out = path.join(import.meta.dirname, '../../bench-results');
    fs.mkdirSync(out, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    fs.writeFileSync(
      path.join(out, `capacity-${stamp}.json`),
      JSON.stringify(
        { settings: { ...opts, desktop: DESKTOP, typingCps: TYPING_CPS }, results },
        null,
        2,
      ),
    );
    fs.writeFileSync(path.join(out, 'capacity-latest.md'), table + '\n');
    process.stdout.write(`\n${table}\n`);
    return results;
  } finally {
    await stopAll();
  }
}
