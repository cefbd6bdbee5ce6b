// `npm run bench`: this server's viewer and noVNC on the same Xvnc desktop (1920x1080), the same
// workloads, one viewer at a time, in one run (measure.mjs has the phases of one measurement).
// The viewers take turns per workload, so drifting machine load hits both alike.
//
// Options (after `npm run bench --`):
//   --seconds=N          measured phase per workload and viewer (default 10)
//   --latency-seconds=N  latency phase (default 10)
//   --warmup-seconds=N   before the measured phase (default 2)
//   --repeat=N           measure each pair N times, report medians (default 1)
//   --workloads=a,b      idle, typing, scrolling, drag, anim-640, anim-1080p (default all)
//   --viewers=vdi,novnc  (default both)
//   --no-cdp             count bytes in the page instead of through CDP (the counts agree; CDP
//                        costs the browser base64 work that grows with the bytes)
//   --save-images        desktop, canvas and diff map PNGs under bench-results/images/
//   --no-stall-check     skip the stalled-viewer memory check (stall-check.mjs)
//   --rfb=unix|tcp       how both viewers' servers reach the Xvnc (default unix: its unix socket,
//                        as this server's own desktops; tcp: 127.0.0.1, as runs before 2026-12-02 evening)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser } from './browser.mjs';
import { buildXClients, rfbTarget, startDesktop } from './desktop.mjs';
import { measureOne, SETTLE_QUIET_MS } from './measure.mjs';
import { combineRepeats } from './metrics.mjs';
import { openNoVncViewer, startWebsockify } from './novnc-runner.mjs';
import { installCleanup, onCleanup, stopAll } from './processes.mjs';
import { checkTargets, issue10Rows, machineInfo, renderMarkdown, writeResults } from './report.mjs';
import { stallCheck } from './stall-check.mjs';
import { openVdiViewer, startVdiServer } from './vdi-runner.mjs';
import { TIME_CODE_SIZE, timeCodeAt, workloads } from './workloads.mjs';

const DESKTOP = { width: 1920, height: 1080 };

const log = (msg) => process.stdout.write(`[bench] ${msg}\n`);

function parseArgs(argv) {
  const opts = {
    seconds: 10,
    latencySeconds: 10,
    warmupSeconds: 2,
    repeat: 1,
    workloads: null,
    viewers: ['vdi', 'novnc'],
    cdp: true,
    saveImages: false,
    stallCheck: true,
    rfb: 'unix',
  };
  const numbers = {
    seconds: 'seconds',
    'latency-seconds': 'latencySeconds',
    'warmup-seconds': 'warmupSeconds',
    repeat: 'repeat',
  };
  for (const a of argv) {
    if (a === '--save-images') opts.saveImages = true;
    else if (a === '--no-cdp') opts.cdp = false;
    else if (a === '--no-stall-check') opts.stallCheck = false;
    else {
      const m = a.match(/^--([a-z-]+)=(.+)$/);
      if (!m) throw new Error(`unknown argument ${a}`);
      const [, k, v] = m;
      if (numbers[k]) {
        const n = Number(v);
        if (!(n > 0) && !(k === 'warmup-seconds' && n === 0))
          throw new Error(`--${k} must be a positive number`);
        opts[numbers[k]] = n;
      } else if (k === 'workloads') opts.workloads = v.split(',');
      else if (k === 'viewers') opts.viewers = v.split(',');
      else if (k === 'rfb' && (v === 'unix' || v === 'tcp')) opts.rfb = v;
      else throw new Error(`unknown option --${k}`);
    }
  }
  opts.repeat = Math.max(1, Math.round(opts.repeat));
  return opts;
}

function summary(r) {
  return (
    `${Math.round(r.traffic.kbitPerSec)} kbit/s, ${r.traffic.paintsPerSec.toFixed(1)} paints/s, ` +
    `latency p50 ${r.latency.p50 ?? 'n/a'} p99 ${r.latency.p99 ?? 'n/a'} ms (n=${r.latency.n}; in the page p50 ${r.latency.inPage?.p50 ?? 'n/a'} p99 ${r.latency.inPage?.p99 ?? 'n/a'}), ` +
    `server CPU ${r.traffic.serverCpuSec.toFixed(2)} s, ${Math.round(r.traffic.serverWakeupsPerSec)} wake-ups/s, exact ${r.quality.area.exactPct?.toFixed(2)} % (settled after ${r.quality.settleMs} ms); ${r.wallSeconds.toFixed(0)} s`
  );
}

export async function main(argv = process.argv.slice(2)) {
  installCleanup();
  const opts = parseArgs(argv);
  const startedAt = new Date().toISOString();
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-bench-'));
  onCleanup(() => fs.rmSync(workDir, { recursive: true, force: true }), 'after');
  try {
    const benchX = await buildXClients(workDir);
    const desk = await startDesktop({ workDir, ...DESKTOP, benchX });
    log(`Xvnc ${desk.display}: RFB on 127.0.0.1:${desk.rfbPort} and ${desk.unixSocket}`);
    const rfb = rfbTarget(desk, opts.rfb);
    log(`both viewers' servers connect over ${opts.rfb}`);
    const vdi = await startVdiServer({ workDir, rfb });
    log(`this server at ${vdi.url} (pid ${vdi.pid}), session ${vdi.sessionId}`);
    const ws = await startWebsockify({ rfb });
    log(`noVNC at ${ws.viewerUrl} (websockify pid ${ws.pid})`);
    const browser = await launchBrowser();
    const machine = await machineInfo(browser);

    const viewers = [
      {
        id: 'vdi',
        name: 'this server',
        open: () => openVdiViewer(browser, vdi, DESKTOP, { countWithCdp: opts.cdp }),
        roots: { measured: [vdi.pid], xvnc: [desk.xvnc.pid] },
        gatewayPid: vdi.pid,
      },
      {
        id: 'novnc',
        name: 'noVNC',
        open: () => openNoVncViewer(browser, ws, DESKTOP, { countWithCdp: opts.cdp }),
        roots: { measured: [desk.xvnc.pid, ws.pid], xvnc: [desk.xvnc.pid] },
      },
    ].filter((v) => opts.viewers.includes(v.id));
    const all = workloads({ workDir });
    const chosen = opts.workloads ? all.filter((w) => opts.workloads.includes(w.id)) : all;
    if (opts.workloads && chosen.length !== opts.workloads.length) {
      throw new Error(
        `unknown workload in ${opts.workloads.join(',')}; known: ${all.map((w) => w.id).join(', ')}`,
      );
    }

    const results = [];
    for (const wl of chosen) {
      const reps = new Map(viewers.map((v) => [v.id, []]));
      const failures = new Map();
      for (let i = 0; i < opts.repeat; i++) {
        // alternate which viewer goes first, so neither always follows the other
        const order = i % 2 === 0 ? viewers : [...viewers].reverse();
        for (const v of order) {
          log(`${wl.id} · ${v.name}${opts.repeat > 1 ? ` · ${i + 1}/${opts.repeat}` : ''}`);
          const began = Date.now();
          try {
            const r = await measureOne(wl, v, {
              desk,
              rfb,
              opts,
              log,
              label: `${wl.id}-${v.id}${opts.repeat > 1 ? `-${i + 1}` : ''}`,
            });
            r.loadAverage = os.loadavg()[0];
            // wall time of this measurement, waiting for the other viewer's link to go included
            r.wallSeconds = (Date.now() - began) / 1000;
            reps.get(v.id).push(r);
            log(`  ${summary(r)}`);
          } catch (err) {
            log(`  failed: ${err.stack ?? err}`);
            const f = failures.get(v.id) ?? { count: 0 };
            failures.set(v.id, { count: f.count + 1, last: String(err.message ?? err) });
            if (v.id === 'vdi') log(`  server output: ${vdi.child.tail().slice(-1500)}`);
          }
        }
      }
      for (const v of viewers) {
        const got = reps.get(v.id);
        const base = { workload: wl.id, title: wl.title, viewer: v.id, viewerName: v.name };
        const failed = failures.get(v.id);
        if (got.length === 0) results.push({ ...base, error: failed?.last ?? 'no result' });
        else
          results.push({
            ...base,
            ...combineRepeats(got),
            runs: got.length > 1 ? got : undefined,
            failedRuns: failed ? { count: failed.count, last: failed.last } : undefined,
          });
      }
    }

    let stall;
    if (opts.stallCheck && viewers.some((v) => v.id === 'vdi')) {
      log('stalled viewer check (this server, full-screen animation)');
      try {
        stall = await stallCheck({
          desk,
          srv: vdi,
          workload: all.find((w) => w.id === 'anim-1080p'),
          openViewer: () => openVdiViewer(browser, vdi, DESKTOP, { countWithCdp: false }),
          seconds: opts.seconds,
        });
        log(
          `  gateway RSS ${stall.gatewayRssMiB.beforeJoin?.toFixed(0)} → ${stall.gatewayRssMiB.end?.toFixed(0)} MiB; stalled viewer got ${stall.stalledViewer.frames} frames`,
        );
      } catch (err) {
        log(`  failed: ${err.stack ?? err}`);
        stall = { error: String(err.message ?? err) };
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
        repeat: opts.repeat,
        rfb: opts.rfb,
        bytesCountedBy: opts.cdp
          ? 'CDP Network.webSocketFrameReceived'
          : 'the page (WebSocket message sizes)',
        settleQuietMs: SETTLE_QUIET_MS,
        timeCode: { at: timeCodeAt(desk), ...TIME_CODE_SIZE },
      },
      results,
      stallCheck: stall,
      targets: checkTargets(results),
      issue10: issue10Rows(results),
      notes: [
        'Everything runs on one machine (Xvnc, both servers, the X clients, Chromium), so CPU and frame-rate figures include contention; the load average shows what else was running.',
        `This server's gateway reads the desktop from Xvnc over RFB (provider \`vnc\`, Raw/CopyRect) on ${opts.rfb === 'unix' ? "Xvnc's unix socket, as its own Xvnc desktops do; websockify reaches the same socket (--unix-target)" : 'TCP on 127.0.0.1, as websockify does'}; the Xvnc CPU spent on it is in the JSON (xvncCpuSec), not in the server CPU column.`,
        'Latency ends when the viewer has drawn the new pixels into its canvas; the compositor frame that shows them adds up to one display frame (16.7 ms) for both viewers alike.',
        'Quality leaves out a 64x64 square around the pointer: Xvnc draws the cursor into the picture of a client that did not move the pointer itself (here xdotool did), and xwd has no cursor.',
      ],
    };
    const markdown = renderMarkdown(run);
    const files = writeResults(run, markdown);
    process.stdout.write(`\n${markdown}\n`);
    log(`written: ${files.markdown} and ${files.json}`);
    log(`took ${((Date.now() - Date.parse(startedAt)) / 60_000).toFixed(1)} min`);
    return run;
  } finally {
    await stopAll();
  }
}
