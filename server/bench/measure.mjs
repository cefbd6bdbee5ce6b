// One measurement: one workload watched by one viewer.
//   1. the workload opens its windows; the viewer opens and settles (no message for QUIET_MS);
//   2. warm-up, then the measured phase: bytes, painted frames, CPU (no time code on the
//      screen, so the figures are the workload's alone);
//   3. the workload stops; once the viewer has had no picture message and has not drawn for
//      SETTLE_QUIET_MS, its canvas is compared with the desktop's own framebuffer (xwd);
//   4. latency phase: the same workload again, with the time code (bench-x clock) on the
//      screen; the page reads it back after each paint.
import { browserRootPids } from './browser.mjs';
import { until } from './conditions.mjs';
import {
  compareImages,
  cpuDelta,
  cpuSample,
  wakeSample,
  percentiles,
  rssMiB,
  rfbClientsOf,
} from './metrics.mjs';
import { saveImages } from './report.mjs';
import { timeCodeAt } from './workloads.mjs';

/** A freshly opened viewer counts as settled after this long without a message or a draw, ms. */
const QUIET_MS = 1_000;
/**
 * After a workload stops, the viewer counts as settled after this long without a picture
 * message and without drawing, ms.
 * Long enough for a delayed lossless refresh (this server re-sends lossy areas once they have
 * cooled down, which can take a couple of seconds after a 30 fps animation stops).
 */
export const SETTLE_QUIET_MS = 3_000;
const SETTLE_TIMEOUT_MS = 60_000;
/** The previous viewer's RFB connection must be gone first (this server keeps it 15 s). */
const RFB_FREE_TIMEOUT_MS = 60_000;
/**
 * Half the side of the square around the pointer left out of the quality check, px: Xvnc draws
 * the cursor into a client's picture when the pointer was last moved by someone else (here
 * xdotool), and `xwd` has no cursor.
 */
const CURSOR_BOX_PX = 32;
/** Warm-up of the latency phase, s (the time code window appears). */
const LATENCY_WARMUP_SEC = 1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {any} wl a workload (workloads.mjs)
 * @param {{ id: string, name: string, open: () => Promise<any>, roots: { measured: number[], xvnc: number[] }, gatewayPid?: number }} v
 * @param {{ desk: any, rfb: { socket?: string, port?: number }, opts: any, label: string, log?: (msg: string) => void }} ctx
 */
export async function measureOne(wl, v, ctx) {
  const { desk } = ctx;
  // the other viewer's server side must be gone, or its work would be counted here
  await until(
    'no RFB client left on the bench Xvnc',
    () => rfbClientsOf(ctx.rfb) === 0,
    RFB_FREE_TIMEOUT_MS,
    200,
  );
  const state = await wl.setup(desk);
  try {
    let viewer;
    let openFailure;
    try {
      viewer = await v.open();
    } catch (err) {
      // one more try (a viewer that fails to connect once is noted in the result, not hidden)
      openFailure = String(err.message ?? err);
      ctx.log?.(`  ${v.name} did not open (${openFailure.split(';')[0]}); trying once more`);
      await until(
        'no RFB client left on the bench Xvnc',
        () => rfbClientsOf(ctx.rfb) === 0,
        RFB_FREE_TIMEOUT_MS,
        200,
      );
      viewer = await v.open();
    }
    try {
      const result = await phases(wl, v, ctx, state, viewer);
      if (openFailure) result.openFailure = openFailure;
      return result;
    } finally {
      await viewer.close();
    }
  } finally {
    await wl.teardown(desk, state);
  }
}

async function phases(wl, v, { desk, opts, label }, state, viewer) {
  await viewer.quiet(QUIET_MS, SETTLE_TIMEOUT_MS);

  // warm-up, then the measured phase
  await wl.start(state, opts.warmupSeconds + opts.seconds, desk);
  await sleep(opts.warmupSeconds * 1000);
  await viewer.resetProbe();
  const a0 = await sample(viewer, v);
  await sleep(opts.seconds * 1000);
  const probeA = await viewer.probe();
  const a1 = await sample(viewer, v);
  const traffic = figures(a0, a1, probeA, opts.cdp);
  if (v.gatewayPid) traffic.gatewayRssMiB = rssMiB(v.gatewayPid);
  const source = await wl.pause(state);

  // settle, then compare with the desktop's own framebuffer
  const stoppedAt = Date.now();
  const last = await viewer.quiet(SETTLE_QUIET_MS, SETTLE_TIMEOUT_MS, { giveUp: true });
  const ref = await desk.capture();
  const got = await viewer.grab();
  const p = await desk.pointer();
  const cursorBox = {
    x: p.x - CURSOR_BOX_PX,
    y: p.y - CURSOR_BOX_PX,
    w: 2 * CURSOR_BOX_PX,
    h: 2 * CURSOR_BOX_PX,
  };
  const quality = {
    // until the viewer's picture last changed (its last message, or the last draw of what it
    // still had queued, whichever came later)
    settleMs: Math.max(0, Math.max(last.messageAt, last.drawAt) - stoppedAt),
    // false: still receiving or drawing SETTLE_TIMEOUT_MS after the workload stopped (compared
    // as it was then, and never counted as exact)
    settled: last.settled,
    lastMessageMs: last.messageAt - stoppedAt,
    lastDrawMs: last.drawAt ? last.drawAt - stoppedAt : null,
    screen: compareImages(ref, got, undefined, cursorBox),
    area: compareImages(ref, got, state.roi, cursorBox),
    cursorBox: compareImages(ref, got, cursorBox),
  };
  if (opts.saveImages) quality.images = await saveImages(label, ref, got);

  // latency: the same workload with the time code on the screen
  const at = timeCodeAt(desk);
  const clock = await desk.benchX('time code', ['clock', String(at.x), String(at.y)]);
  try {
    await viewer.setClock(at);
    await wl.start(state, LATENCY_WARMUP_SEC + opts.latencySeconds, desk);
    await sleep(LATENCY_WARMUP_SEC * 1000);
    await viewer.resetProbe();
    const b0 = await sample(viewer, v);
    await sleep(opts.latencySeconds * 1000);
    const probeB = await viewer.probe();
    const b1 = await sample(viewer, v);
    await wl.pause(state);
    const samples = probeB.samples;
    const latency = {
      n: samples.length,
      ...percentiles(samples, [50, 95, 99]),
      max: samples.length ? Math.max(...samples) : null,
      torn: probeB.torn,
      implausible: probeB.implausible,
      samples,
      // of each sample, the ms from the last picture message to the read-back: in the page
      inPage: probeB.inPage ? percentiles(probeB.inPage, [50, 99]) : null,
      inPageSamples: probeB.inPage ?? [],
      phase: figures(b0, b1, probeB, opts.cdp),
    };
    return { traffic, source, quality, latency, pageErrors: [...viewer.errors] };
  } finally {
    await viewer.setClock(null).catch(() => {});
    await desk.close(clock);
  }
}

/** Counters at one instant, for differences over a phase. */
async function sample(viewer, v) {
  return {
    at: Date.now(),
    ws: viewer.ws(),
    server: cpuSample(v.roots.measured),
    serverWakes: wakeSample(v.roots.measured),
    // this server's video encoders (ffmpeg children, counted in `server` too)
    encoders: cpuSample(v.roots.measured, 'ffmpeg'),
    xvnc: cpuSample(v.roots.xvnc),
    browser: cpuSample(browserRootPids()),
    hooks: await viewer.hooks(),
    codecs: viewer.codecs?.() ?? null,
  };
}

/** b − a for every number in a nested object (counters at the end minus at the start). */
function difference(a, b) {
  if (typeof b === 'number') return b - (typeof a === 'number' ? a : 0);
  if (!b || typeof b !== 'object') return b;
  const out = {};
  for (const k of Object.keys(b)) out[k] = difference(a?.[k], b[k]);
  return out;
}

function figures(s0, s1, probe, cdp) {
  const secs = (s1.at - s0.at) / 1000;
  const cdpBytes = cdp ? s1.ws.bytesIn - s0.ws.bytesIn : null;
  const bytes = cdp ? cdpBytes : probe.wsBytes;
  return {
    seconds: secs,
    bytes,
    kbitPerSec: (bytes * 8) / 1000 / secs,
    bytesSource: cdp ? 'CDP Network.webSocketFrameReceived' : 'page WebSocket messages',
    // the same bytes counted three ways: CDP, the page's WebSocket messages, and (this server
    // only) the client's own frame counter (window.__vdiViewer.bytesReceived, frames only)
    cdpBytes,
    pageBytes: probe.wsBytes,
    clientFrameBytes: s0.hooks && s1.hooks ? s1.hooks.bytesReceived - s0.hooks.bytesReceived : null,
    messages: probe.wsMessages,
    bytesSent: cdp ? s1.ws.bytesOut - s0.ws.bytesOut : null,
    paints: probe.paints,
    paintsPerSec: probe.paints / secs,
    rafPerSec: probe.rafTicks / secs,
    framesDrawnPerSec:
      s0.hooks && s1.hooks ? (s1.hooks.framesDrawn - s0.hooks.framesDrawn) / secs : null,
    // this server only: what its frames were made of (rects, payload bytes, pixels per codec)
    frames: s0.codecs && s1.codecs ? difference(s0.codecs, s1.codecs) : null,
    serverCpuSec: cpuDelta(s0.server, s1.server),
    // of which the video encoders (ffmpeg/x264 children): the rest is the gateway's own
    encoderCpuSec: cpuDelta(s0.encoders, s1.encoders),
    // the server's threads woken per second (Xvnc + websockify for noVNC)
    serverWakeupsPerSec: cpuDelta(s0.serverWakes, s1.serverWakes) / secs,
    xvncCpuSec: cpuDelta(s0.xvnc, s1.xvnc),
    browserCpuSec: cpuDelta(s0.browser, s1.browser),
  };
}
