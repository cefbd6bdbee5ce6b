// The outcome: the machine it ran on, a Markdown table (both viewers and this/noVNC ratios),
// the issue's targets checked against the figures, and the raw figures as JSON, written under
// bench-results/ at the repository root (git-ignored).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const RESULTS_DIR = path.join(ROOT, 'bench-results');

/** stdout and stderr of a command, whatever its exit status ('unknown' if it cannot run) */
function tryRun(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || 'unknown';
}

/** Facts about the machine and the software under test. */
export async function machineInfo(browser) {
  const cpu =
    fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ??
    os.cpus()[0]?.model ??
    'unknown';
  const dpkg = (p) => tryRun('dpkg-query', ['-W', '-f=${Version}', p]);
  const xvnc = tryRun('Xvnc', ['-version']).match(/TigerVNC[^\n]*/)?.[0] ?? 'unknown';
  const commit = tryRun('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = tryRun('git', ['-C', ROOT, 'status', '--porcelain']).length > 0;
  return {
    cpu,
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    chromium: browser.version(),
    novnc: dpkg('novnc'),
    websockify: dpkg('websockify'),
    tigervnc: xvnc,
    commit: `${commit}${dirty ? ' + uncommitted changes' : ''}`,
    loadAverageAtStart: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
}

const fmt = (v, digits = 0) =>
  v === null || v === undefined || Number.isNaN(v) ? 'n/a' : Number(v).toFixed(digits);
const ratio = (a, b, digits = 2) =>
  a === null || b === null || a === undefined || b === undefined || !b
    ? 'n/a'
    : (a / b).toFixed(digits);
const lat = (l) => (l && l.n ? `${fmt(l.p50)} / ${fmt(l.p95)} / ${fmt(l.p99)}` : 'n/a');
const psnr = (q) => (!q || q.error ? 'n/a' : q.psnrDb === null ? '∞ (exact)' : fmt(q.psnrDb, 1));
const exact = (q, settled = true) =>
  !q || q.error
    ? 'n/a'
    : `${q.exactPct.toFixed(q.exactPct === 100 ? 0 : 2)}${settled ? '' : ' (not settled)'}`;

/**
 * @param {{ machine: any, settings: any, results: any[], notes: string[] }} run
 */
export function renderMarkdown(run) {
  const { machine, settings, results } = run;
  const lines = [];
  lines.push(`# Streaming benchmark: this server vs noVNC`, '');
  lines.push(
    `Run ${run.startedAt}, ${settings.seconds} s per measured phase (after ${settings.warmupSeconds} s warm-up), latency over ${settings.latencySeconds} s.`,
    '',
  );
  lines.push(
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}; Node ${machine.node}; ` +
      `Chromium ${machine.chromium} (headless, --disable-gpu); noVNC ${machine.novnc} (vnc_lite.html, defaults: Tight, quality 6, compression 2) ` +
      `via websockify ${machine.websockify}; ${machine.tigervnc}; this server at ${machine.commit}. Load average at start: ${machine.loadAverageAtStart.join(', ')}.`,
    '',
  );
  lines.push(
    '| workload | viewer | received kbit/s | frames painted/s | damage→paint ms p50 / p95 / p99 | server CPU s | server wake-ups/s | browser CPU s | exact px % (after settling) | PSNR dB |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  const byWorkload = new Map();
  for (const r of results) {
    if (!byWorkload.has(r.workload)) byWorkload.set(r.workload, {});
    byWorkload.get(r.workload)[r.viewer] = r;
  }
  for (const [workload, pair] of byWorkload) {
    for (const key of ['vdi', 'novnc']) {
      const r = pair[key];
      if (!r) continue;
      if (r.error) {
        lines.push(
          `| ${workload} | ${r.viewerName} | failed: ${r.error.split('\n')[0].slice(0, 120)} | | | | | | | |`,
        );
        continue;
      }
      lines.push(
        `| ${workload} | ${r.viewerName} | ${fmt(r.traffic.kbitPerSec)} | ${fmt(r.traffic.paintsPerSec, 1)} | ${lat(r.latency)} | ` +
          `${fmt(r.traffic.serverCpuSec, 2)} | ${fmt(r.traffic.serverWakeupsPerSec)} | ${fmt(r.traffic.browserCpuSec, 2)} | ${exact(r.quality?.area, r.quality?.settled !== false)} | ${psnr(r.quality?.area)} |`,
      );
    }
    const a = pair.vdi;
    const b = pair.novnc;
    if (a && b && !a.error && !b.error) {
      const lr = (p) => ratio(a.latency?.[p], b.latency?.[p]);
      lines.push(
        `| ${workload} | **this / noVNC** | **${ratio(a.traffic.kbitPerSec, b.traffic.kbitPerSec)}** | ${ratio(a.traffic.paintsPerSec, b.traffic.paintsPerSec)} | ` +
          `${lr('p50')} / ${lr('p95')} / ${lr('p99')} | ${ratio(a.traffic.serverCpuSec, b.traffic.serverCpuSec)} | ${ratio(a.traffic.serverWakeupsPerSec, b.traffic.serverWakeupsPerSec)} | ${ratio(a.traffic.browserCpuSec, b.traffic.browserCpuSec)} | | |`,
      );
    }
  }
  lines.push('');
  lines.push(
    'Columns: *received* = WebSocket payload bytes the browser received during the measured phase (CDP Network.webSocketFrameReceived, binary frames counted decoded); ' +
      '*frames painted/s* = display frames (requestAnimationFrame ticks) in which the viewer canvas changed; ' +
      '*damage→paint* = wall-clock ms from an X client drawing a time code to the viewer having drawn it into its canvas (measured in a second phase of the same workload with the time code running); ' +
      `*server CPU* = user+system CPU seconds over the ${settings.seconds} s phase of the gateway process (this server) or of Xvnc + websockify (noVNC); ` +
      '*server wake-ups/s* = times per second the threads of those processes went to sleep and were woken (voluntary context switches); ' +
      '*browser CPU* = all Chromium processes; ' +
      `*exact px % / PSNR* = viewer canvas vs the desktop framebuffer (xwd) once no frame has arrived for ${settings.settleQuietMs / 1000} s after the workload stopped, over the workload's area (the whole screen for idle and drag); *not settled*: still receiving or drawing 60 s after the workload stopped, compared as it was then and never counted as exact.`,
    '',
  );
  lines.push(...issue10Table(results, settings));
  const ours = results.filter((r) => r.viewer === 'vdi' && !r.error && r.traffic.frames);
  if (ours.length) {
    const codecs = [...new Set(ours.flatMap((r) => Object.keys(r.traffic.frames.byCodec ?? {})))];
    lines.push(
      "This server's frames in the measured phase, by codec (payload KiB / rects):",
      '',
      `| workload | frames | ${codecs.join(' | ')} | mean JPEG quality |`,
      `|---|---:|${codecs.map(() => '---:').join('|')}|---:|`,
    );
    for (const r of ours) {
      const f = r.traffic.frames;
      const cells = codecs.map((c) => {
        const x = f.byCodec?.[c];
        return x && x.rects ? `${fmt(x.bytes / 1024)} / ${fmt(x.rects)}` : '';
      });
      const q = f.lossyFrames ? fmt(f.qualitySum / f.lossyFrames) : '';
      lines.push(`| ${r.workload} | ${fmt(f.frames)} | ${cells.join(' | ')} | ${q} |`);
    }
    lines.push('');
  }
  const st = run.stallCheck;
  if (st) {
    lines.push('Stalled viewer (memory check):', '');
    if (st.error) lines.push(`- failed: ${st.error}`, '');
    else {
      lines.push(
        `- ${st.workload}: this server's viewer painted ${fmt(st.paintsPerSecAlone, 1)} frames/s alone and ${fmt(st.paintsPerSecWithStalled, 1)} frames/s ` +
          `while a second viewer of the same session took frames without ever acknowledging one (it received ${st.stalledViewer.frames} frames, ${fmt(st.stalledViewer.bytes / 1024)} KiB, over ${st.secondsEach} s).`,
        `- gateway resident memory: ${fmt(st.gatewayRssMiB.beforeJoin)} MiB before the stalled viewer joined, ${fmt(st.gatewayRssMiB.end)} MiB at the end, ` +
          `${fmt(st.gatewayRssMiB.max)} MiB at most; trend with the stalled viewer ${fmt(st.gatewayRssMiB.slopeMiBPerSecWithStalled, 2)} MiB/s.`,
        '',
      );
    }
  }
  if (run.targets?.length) {
    lines.push('Targets of issue 5:', '');
    for (const t of run.targets)
      lines.push(
        `- ${t.met === null ? '?' : t.met ? 'met' : '**not met**'}: ${t.what} (${t.detail})`,
      );
    lines.push('');
  }
  if (run.notes?.length) {
    lines.push('Notes:', '');
    for (const n of run.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** The repetitions behind a result (one unless --repeat). */
const repsOf = (r) => r.runs ?? [r];
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** CPU seconds per measured second, per repetition: `xvnc` adds Xvnc's share (this server). */
const cpuPerSec = (r, xvnc) =>
  median(
    repsOf(r).map(
      (x) => (x.traffic.serverCpuSec + (xvnc ? x.traffic.xvncCpuSec : 0)) / x.traffic.seconds,
    ),
  );
/** Repetitions whose canvas was pixel-exact after settling (cursor box left out). */
const exactCount = (r) => {
  const reps = repsOf(r);
  const n = reps.filter(
    (x) => x.quality?.settled !== false && x.quality?.area && x.quality.area.mismatched === 0,
  ).length;
  return { n, of: reps.length + (r.failedRuns?.count ?? 0) };
};

/**
 * Issue 10's targets per workload, from one run: bytes, frames painted, latency, server CPU
 * (gateway + Xvnc against websockify + Xvnc, as the issue states it) and how many
 * repetitions were exact after settling. Figures are medians over the repetitions, latency
 * percentiles are over the pooled samples.
 */
export function issue10Rows(results) {
  const rows = [];
  for (const w of [...new Set(results.map((r) => r.workload))]) {
    const a = results.find((r) => r.workload === w && r.viewer === 'vdi' && !r.error);
    const b = results.find((r) => r.workload === w && r.viewer === 'novnc' && !r.error);
    if (!a || !b) continue;
    const anim = w.startsWith('anim');
    const bytes = b.traffic.kbitPerSec ? a.traffic.kbitPerSec / b.traffic.kbitPerSec : null;
    const cpuUs = cpuPerSec(a, true);
    const cpuThem = cpuPerSec(b, false);
    const cpu = cpuThem ? cpuUs / cpuThem : null;
    const cpuGateway = cpuThem ? cpuPerSec(a, false) / cpuThem : null;
    const exactUs = exactCount(a);
    const exactThem = exactCount(b);
    const missed = [];
    if (cpu !== null && cpu > 1) missed.push('CPU');
    if (bytes !== null && bytes > (anim ? 0.2 : 0.5)) missed.push('bytes');
    if (a.traffic.paintsPerSec < b.traffic.paintsPerSec) missed.push('frames');
    if (a.latency?.n && b.latency?.n) {
      if (a.latency.p50 > b.latency.p50) missed.push('p50');
      if (a.latency.p99 > b.latency.p99) missed.push('p99');
    } else missed.push('latency not measured');
    if (exactUs.n < exactUs.of) missed.push('exact');
    rows.push({
      workload: w,
      reps: exactUs.of,
      bytesRatio: bytes,
      bytesTarget: anim ? 0.2 : 0.5,
      paintsPerSec: { us: a.traffic.paintsPerSec, novnc: b.traffic.paintsPerSec },
      latency: {
        us: { p50: a.latency?.p50 ?? null, p99: a.latency?.p99 ?? null },
        novnc: { p50: b.latency?.p50 ?? null, p99: b.latency?.p99 ?? null },
      },
      cpuRatio: cpu,
      cpuRatioGatewayOnly: cpuGateway,
      cpuPercentOfCore: { us: cpuUs * 100, novnc: cpuThem * 100 },
      exact: { us: exactUs, novnc: exactThem },
      settleMsMax: Math.max(...repsOf(a).map((x) => x.quality?.settleMs ?? 0)),
      missed,
    });
  }
  return rows;
}

function issue10Table(results, settings) {
  const rows = issue10Rows(results);
  if (!rows.length) return [];
  const reps = settings.repeat ?? 1;
  const out = [
    `Issue 10's targets, per workload (${reps} repetition${reps === 1 ? '' : 's'}; medians, latency over the pooled samples; *server CPU* = this gateway + Xvnc against websockify + Xvnc, % of a core over the measured phase):`,
    '',
    '| workload | bytes us/noVNC | frames painted/s us vs noVNC | latency p50 / p99 ms us vs noVNC | server CPU us/noVNC (gateway alone) | server CPU % us vs noVNC | exact after settling: us, noVNC (settled within, ms) | targets missed |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const l = r.latency;
    out.push(
      `| ${r.workload} | ${r.bytesRatio === null ? 'n/a' : `${r.bytesRatio.toFixed(2)} (≤ ${r.bytesTarget})`} | ` +
        `${fmt(r.paintsPerSec.us, 1)} vs ${fmt(r.paintsPerSec.novnc, 1)} | ` +
        `${fmt(l.us.p50)} / ${fmt(l.us.p99)} vs ${fmt(l.novnc.p50)} / ${fmt(l.novnc.p99)} | ` +
        `${fmt(r.cpuRatio, 2)} (${fmt(r.cpuRatioGatewayOnly, 2)}) | ${fmt(r.cpuPercentOfCore.us, 1)} vs ${fmt(r.cpuPercentOfCore.novnc, 1)} | ` +
        `${r.exact.us.n} of ${r.exact.us.of}, ${r.exact.novnc.n} of ${r.exact.novnc.of} (${fmt(r.settleMsMax)}) | ` +
        `${r.missed.length ? r.missed.join(', ') : 'none'} |`,
    );
  }
  out.push('');
  return out;
}

/** The issue's targets, checked against the figures (null = could not be checked). */
export function checkTargets(results) {
  const get = (w, v) => results.find((r) => r.workload === w && r.viewer === v && !r.error);
  const out = [];
  const bytesTarget = (w, max) => {
    const a = get(w, 'vdi');
    const b = get(w, 'novnc');
    if (!a || !b) return; // not measured in this run
    // the same figure as the table's ratio (bytes per second: phases differ by a few ms)
    const x = b.traffic.kbitPerSec ? a.traffic.kbitPerSec / b.traffic.kbitPerSec : null;
    out.push({
      what: `${w}: bytes at most ${max}x noVNC's`,
      met: x === null ? null : x <= max,
      detail: x === null ? 'noVNC received nothing' : `${x.toFixed(2)}x`,
    });
  };
  for (const w of ['typing', 'scrolling', 'drag']) bytesTarget(w, 0.5);
  for (const w of ['anim-640', 'anim-1080p']) bytesTarget(w, 0.8);
  const typing = get('typing', 'vdi');
  if (typing?.latency?.n) {
    out.push({
      what: 'typing: damage→paint p50 ≤ 25 ms',
      met: typing.latency.p50 <= 25,
      detail: `${typing.latency.p50} ms`,
    });
    out.push({
      what: 'typing: damage→paint p99 ≤ 60 ms',
      met: typing.latency.p99 <= 60,
      detail: `${typing.latency.p99} ms`,
    });
  }
  for (const w of [...new Set(results.map((r) => r.workload))]) {
    const a = get(w, 'vdi');
    const b = get(w, 'novnc');
    if (a?.latency?.n && b?.latency?.n) {
      const ok = a.latency.p50 <= b.latency.p50 && a.latency.p99 <= b.latency.p99;
      out.push({
        what: `${w}: latency no worse than noVNC (p50 and p99)`,
        met: ok,
        detail: `p50 ${a.latency.p50} vs ${b.latency.p50} ms, p99 ${a.latency.p99} vs ${b.latency.p99} ms`,
      });
    }
    if (a?.quality?.area && !a.quality.area.error) {
      const n = b?.quality?.area;
      out.push({
        what: `${w}: pixel-exact after settling`,
        met: a.quality.area.mismatched === 0,
        detail: `this server ${a.quality.area.mismatched} px differ; noVNC ${n && !n.error ? `${n.mismatched} px` : 'n/a'}`,
      });
    }
  }
  const full = get('anim-1080p', 'vdi');
  if (full) {
    out.push({
      what: 'anim-1080p: at least 30 frames painted per second',
      met: full.traffic.paintsPerSec >= 30,
      detail: `${full.traffic.paintsPerSec.toFixed(1)} fps (the X client drew ${full.source?.sourceFps?.toFixed(1) ?? 'n/a'} fps)`,
    });
  }
  return out;
}

/** Write <stamp>.md/.json and latest.md/.json under bench-results/; returns the paths. */
export function writeResults(run, markdown) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = run.startedAt.replace(/[:.]/g, '-');
  const json = JSON.stringify(run, null, 2);
  const files = {
    markdown: path.join(RESULTS_DIR, `bench-${stamp}.md`),
    json: path.join(RESULTS_DIR, `bench-${stamp}.json`),
  };
  fs.writeFileSync(files.markdown, markdown);
  fs.writeFileSync(files.json, json);
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.md'), markdown);
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), json);
  return files;
}

/**
 * Save the desktop framebuffer, the viewer canvas and a diff map (white where they differ,
 * brighter = larger difference) as PNG under bench-results/images/; returns the paths.
 */
export async function saveImages(name, ref, got) {
  const dir = path.join(RESULTS_DIR, 'images');
  fs.mkdirSync(dir, { recursive: true });
  const raw = { raw: { width: ref.width, height: ref.height, channels: 4 } };
  const files = {
    desktop: path.join(dir, `${name}-desktop.png`),
    canvas: path.join(dir, `${name}-canvas.png`),
    diff: path.join(dir, `${name}-diff.png`),
  };
  await sharp(ref.rgba, raw).png().toFile(files.desktop);
  if (got.width === ref.width && got.height === ref.height) {
    await sharp(got.rgba, raw).png().toFile(files.canvas);
    const diff = Buffer.alloc(ref.width * ref.height);
    for (let i = 0, p = 0; p < diff.length; i += 4, p++) {
      const d = Math.max(
        Math.abs(ref.rgba[i] - got.rgba[i]),
        Math.abs(ref.rgba[i + 1] - got.rgba[i + 1]),
        Math.abs(ref.rgba[i + 2] - got.rgba[i + 2]),
      );
      diff[p] = d === 0 ? 0 : Math.min(255, 64 + d * 8);
    }
    await sharp(diff, { raw: { width: ref.width, height: ref.height, channels: 1 } })
      .png()
      .toFile(files.diff);
  }
  return files;
}
