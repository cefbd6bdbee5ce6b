// `npm run bench`: this server's viewer and noVNC on the same Xvnc desktop (1920x1080), the same
// workloads, one viewer at a time, in one run. Per workload and viewer:
//   1. the workload opens its windows; the viewer opens and settles (no frame for QUIET_MS);
//   2. warm-up, then the measured phase: bytes, painted frames, CPU (no time code on screen,
//      so the figures are the workload's alone);
//   3. the workload stops; once the viewer has been quiet for SETTLE_QUIET_MS, its canvas is
//      compared with the desktop's own framebuffer (xwd);
//   4. latency phase: the same workload again with the time code (bench-x clock) running;
//      the page reads it back after each paint.
// Options (after `npm run bench --`): --seconds=N --latency-seconds=N --warmup-seconds=N
// --workloads=idle,typing,… --viewers=vdi,novnc --save-images (desktop, canvas and a diff map
// as PNG under bench-results/images/ for each quality check)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, browserRootPids } from './browser.mjs';
import { until } from './conditions.mjs';
import { buildXClients, startDesktop } from './desktop.mjs';
import { compareImages, cpuDelta, cpuSample, percentiles, rssMiB, tcpConnectionsTo } from './metrics.mjs';
import { openNoVncViewer, startWebsockify } from './novnc-runner.mjs';
import { installCleanup, onCleanup, stopAll } from './processes.mjs';
import { checkTargets, machineInfo, renderMarkdown, saveImages, writeResults } from './report.mjs';
import { openVdiViewer, startVdiServer } from './vdi-runner.mjs';
import { TIME_CODE_SIZE, timeCodeAt, workloads } from './workloads.mjs';

const DESKTOP = { width: 1920, height: 1080 };
/** A freshly opened viewer counts as settled after this long without a frame, ms. */
const QUIET_MS = 1_000;
/**
 * After a workload stops, the viewer counts as settled after this long without a frame, ms.
 * Long enough for a delayed lossless refresh (this server re-sends lossy areas once they have
 * cooled down, which can take a couple of seconds after a 30 fps animation stops).
 */
const SETTLE_QUIET_MS = 3_000;
const SETTLE_TIMEOUT_MS = 60_000;
/** The previous viewer's RFB connection must be gone first (this server keeps it 15 s). */
const RFB_FREE_TIMEOUT_MS = 60_000;
/**
 * Half the side of the square around the pointer left out of the quality check, px: Xvnc draws
 * the cursor into a client's picture when the pointer was moved by someone else (xdotool).
 */
const CURSOR_BOX_PX = 32;
/** Warm-up of the latency phase, seconds (the time code window appears, caches fill). */
const LATENCY_WARMUP_SEC = 1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stdout.write(`[bench] ${msg}\n`);

function parseArgs(argv) {
  const opts = { seconds: 10, latencySeconds: 10, warmupSeconds: 2, workloads: null, viewers: ['vdi', 'novnc'], saveImages: false };
  for (const a of argv) {
    if (a === '--save-images') {
      opts.saveImages = true;
      continue;
    }
    const m = a.match(/^--([a-z-]+)=(.*)$/);
    if (!m) throw new Error(`unknown argument ${a}`);
    const [, k, v] = m;
    if (k === 'seconds') opts.seconds = Number(v);
    else if (k === 'latency-seconds') opts.latencySeconds = Number(v);
    else if (k === 'warmup-seconds') opts.warmupSeconds = Number(v);
    else if (k === 'workloads') opts.workloads = v.split(',');
    else if (k === 'viewers') opts.viewers = v.split(',');
    else throw new Error(`unknown option --${k}`);
  }
  for (const k of ['seconds', 'latencySeconds', 'warmupSeconds']) {
    if (!(opts[k] >= 0) || (k !== 'warmupSeconds' && opts[k] <= 0)) throw new Error(`--${k} must be a positive number`);
  }
  return opts;
}

/** Counters at one instant, for differences over a phase. */
async function sample(viewer, serverRoots) {
  return {
    at: Date.now(),
    ws: viewer.ws(),
    cpu: cpuSample(serverRoots.all),
    server: cpuSample(serverRoots.measured),
    xvnc: cpuSample(serverRoots.xvnc),
    browser: cpuSample(browserRootPids()),
    hooks: await viewer.hooks(),
  };
}

function phaseFigures(s0, s1, probe) {
  const secs = (s1.at - s0.at) / 1000;
  const bytes = s1.ws.bytesIn - s0.ws.bytesIn;
  return {
    seconds: secs,
    bytes,
    kbitPerSec: (bytes * 8) / 1000 / secs,
    wsFrames: s1.ws.framesIn - s0.ws.framesIn,
    pageWsBytes: probe.wsBytes,
    bytesSent: s1.ws.bytesOut - s0.ws.bytesOut,
    paints: probe.paints,
    paintsPerSec: probe.paints / secs,
    rafPerSec: probe.rafTicks / secs,
    // this server's client counts its own frames and frame bytes (window.__vdiViewer): a cross-check
    framesDrawnPerSec: s0.hooks && s1.hooks ? (s1.hooks.framesDrawn - s0.hooks.framesDrawn) / secs : null,
    clientFrameBytes: s0.hooks && s1.hooks ? s1.hooks.bytesReceived - s0.hooks.bytesReceived : null,
    serverCpuSec: cpuDelta(s0.server, s1.server),
    xvncCpuSec: cpuDelta(s0.xvnc, s1.xvnc),
    browserCpuSec: cpuDelta(s0.browser, s1.browser),
  };
}

async function runOne(wl, v, ctx) {
  const { desk, opts } = ctx;
  await until('no RFB client left on the bench Xvnc', () => tcpConnectionsTo(desk.rfbPort) === 0, RFB_FREE_TIMEOUT_MS, 200);
  const s = await wl.setup(desk);
  const viewer = await v.open();
  try {
    await viewer.quiet(QUIET_MS, SETTLE_TIMEOUT_MS);

    // warm-up, then the measured phase
    await wl.start(s, opts.warmupSeconds + opts.seconds, desk);
    await sleep(opts.warmupSeconds * 1000);
    await viewer.resetProbe();
    const a0 = await sample(viewer, v.roots);
    await sleep(opts.seconds * 1000);
    const probeA = await viewer.probe();
    const a1 = await sample(viewer, v.roots);
    const traffic = phaseFigures(a0, a1, probeA);
    traffic.gatewayRssMiB = v.id === 'vdi' ? rssMiB(ctx.vdi.pid) : undefined;
    const source = await wl.pause(s);

    // settle, then compare with the desktop's own framebuffer
    const stoppedAt = Date.now();
    const lastFrameAt = await viewer.quiet(SETTLE_QUIET_MS, SETTLE_TIMEOUT_MS);
    const ref = await desk.capture();
    const got = await viewer.grab();
    const p = await desk.pointer();
    const cursorBox = { x: p.x - CURSOR_BOX_PX, y: p.y - CURSOR_BOX_PX, w: 2 * CURSOR_BOX_PX, h: 2 * CURSOR_BOX_PX };
    const quality = {
      settleMs: Math.max(0, lastFrameAt - stoppedAt),
      screen: compareImages(ref, got, undefined, cursorBox),
      area: compareImages(ref, got, s.roi, cursorBox),
      cursorBox: compareImages(ref, got, cursorBox),
    };
    if (opts.saveImages) quality.images = await saveImages(`${wl.id}-${v.id}`, ref, got);

    // latency phase: the same workload with the time code on screen
    const at = timeCodeAt(desk);
    const clock = await desk.benchX('time code', ['clock', String(at.x), String(at.y)]);
    try {
      await viewer.setClock(at);
      await wl.start(s, LATENCY_WARMUP_SEC + opts.latencySeconds, desk);
      await sleep(LATENCY_WARMUP_SEC * 1000);
      await viewer.resetProbe();
      const b0 = await sample(viewer, v.roots);
      await sleep(opts.latencySeconds * 1000);
      const probeB = await viewer.probe();
      const b1 = await sample(viewer, v.roots);
      await wl.pause(s);
      const samples = probeB.samples;
      const latency = {
        n: samples.length,
        ...percentiles(samples, [50, 95, 99]),
        max: samples.length ? Math.max(...samples) : null,
        torn: probeB.torn,
        implausible: probeB.implausible,
        phase: phaseFigures(b0, b1, probeB),
      };
      return { workload: wl.id, title: wl.title, viewer: v.id, viewerName: v.name, traffic, source, quality, latency, pageErrors: viewer.errors };
    } finally {
      await viewer.setClock(null).catch(() => {});
      await desk.close(clock);
    }
  } finally {
    await viewer.close();
    await wl.teardown(desk, s);
  }
}

export async function main(argv = process.argv.slice(2)) {
  installCleanup();
  const opts = parseArgs(argv);
  const startedAt = new Date().toISOString();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-bench-'));
  onCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }), 'after');
  try {
    log(`work dir ${workDir}`);
    const benchX = await buildXClients(workDir);
    const desk = await startDesktop({ workDir, ...DESKTOP, benchX });
    log(`Xvnc ${desk.display} (RFB on 127.0.0.1:${desk.rfbPort} and ${desk.unixSocket})`);
    const vdi = await startVdiServer({ workDir, rfbPort: desk.rfbPort });
    log(`this server at ${vdi.url}, session ${vdi.sessionId}`);
    const ws = await startWebsockify({ rfbPort: desk.rfbPort });
    log(`noVNC at ${ws.viewerUrl}`);
    const browser = await launchBrowser();
    const machine = await machineInfo(browser);

    const viewers = [
      {
        id: 'vdi',
        name: 'this server',
        open: () => openVdiViewer(browser, vdi, DESKTOP),
        roots: { measured: [vdi.pid], xvnc: [desk.xvnc.pid], all: [vdi.pid, desk.xvnc.pid, ws.pid] },
      },
      {
        id: 'novnc',
        name: 'noVNC',
        open: () => openNoVncViewer(browser, ws, DESKTOP),
        roots: { measured: [desk.xvnc.pid, ws.pid], xvnc: [desk.xvnc.pid], all: [vdi.pid, desk.xvnc.pid, ws.pid] },
      },
    ].filter((v) => opts.viewers.includes(v.id));
    const all = workloads({ workDir });
    const chosen = opts.workloads ? all.filter((w) => opts.workloads.includes(w.id)) : all;
    if (opts.workloads && chosen.length !== opts.workloads.length) {
      throw new Error(`unknown workload in ${opts.workloads.join(',')}; known: ${all.map((w) => w.id).join(', ')}`);
    }

    const results = [];
    for (const wl of chosen) {
      for (const v of viewers) {
        log(`${wl.id} · ${v.name}`);
        try {
          const r = await runOne(wl, v, { desk, opts, vdi });
          results.push(r);
          log(
            `  ${Math.round(r.traffic.kbitPerSec)} kbit/s, ${r.traffic.paintsPerSec.toFixed(1)} paints/s, ` +
              `latency p50 ${r.latency.p50 ?? 'n/a'} p99 ${r.latency.p99 ?? 'n/a'} ms (n=${r.latency.n}), ` +
              `server CPU ${r.traffic.serverCpuSec.toFixed(2)} s, exact ${r.quality.area.exactPct?.toFixed(2)} %`,
          );
        } catch (err) {
          log(`  failed: ${err.stack ?? err}`);
          results.push({ workload: wl.id, title: wl.title, viewer: v.id, viewerName: v.name, error: String(err.message ?? err) });
          if (v.id === 'vdi') log(`  server output: ${vdi.child.tail().slice(-1500)}`);
        }
      }
    }

    const run = {
      startedAt,
      machine: { ...machine, loadAverageAtEnd: os.loadavg().map((l) => Number(l.toFixed(2))) },
      settings: {
        desktop: DESKTOP,
        seconds: opts.seconds,
        latencySeconds: opts.latencySeconds,
        warmupSeconds: opts.warmupSeconds,
        settleQuietMs: SETTLE_QUIET_MS,
        timeCode: { at: timeCodeAt(desk), ...TIME_CODE_SIZE },
      },
      results,
      targets: checkTargets(results),
      notes: [
        'One machine runs everything (Xvnc, both servers, the X clients, Chromium), so CPU figures include contention; the load average above shows what else was running.',
        "This server's gateway reads the desktop over RFB/TCP from Xvnc (provider `vnc`); its Xvnc-side CPU (RFB encoding for the gateway) is in the JSON as xvncCpuSec, not in the server CPU column.",
        'Latency includes the X server, the RFB hop(s), the WebSocket, decoding and drawing, up to the canvas holding the new pixels; the compositor frame that shows them adds up to one display frame (16.7 ms) for both viewers alike.',
      ],
    };
    const markdown = renderMarkdown(run);
    const files = writeResults(run, markdown);
    process.stdout.write(`\n${markdown}\n`);
    log(`written: ${files.markdown}, ${files.json}`);
    return run;
  } finally {
    await stopAll();
  }
}
