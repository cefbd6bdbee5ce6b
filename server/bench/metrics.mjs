// Measurements that are not the browser's: process CPU time and memory from /proc, latency
// percentiles, and picture quality (viewer canvas vs the desktop's own framebuffer).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (getconf CLK_TCK, 100 on Linux). */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** Fields of /proc/<pid>/stat after the ")" that ends the command name (man 5 proc). */
function statFields(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** All pids whose parent chain reaches `root` (root included). */
export function processTree(root) {
  const parent = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      parent.set(Number(name), Number(statFields(name)[1])); // field 4: ppid
    } catch {
      /* exited while we looked */
    }
  }
  const tree = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree].filter((p) => parent.has(p));
}

/**
 * CPU seconds (user + system, all threads) of each process in the trees under `roots`; with
 * `command`, of those processes only whose command name (/proc/<pid>/comm) it is.
 * @param {number[]} roots
 * @param {string} [command]
 * @returns {Map<number, number>}
 */
export function cpuSample(roots, command) {
  const m = new Map();
  for (const root of roots) {
    for (const pid of processTree(root)) {
      try {
        if (command && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== command) continue;
        const f = statFields(pid);
        m.set(pid, (Number(f[11]) + Number(f[12])) / CLK_TCK); // fields 14, 15: utime, stime
      } catch {
        /* exited */
      }
    }
  }
  return m;
}

/**
 * Times each thread of the processes under `roots` has gone to sleep and been woken again
 * (voluntary context switches, /proc/<pid>/task/<tid>/status), by thread: an idle server
 * that wakes a hundred times a second costs CPU for nothing. A thread that ended between two
 * samples takes its count with it.
 * @param {number[]} roots
 * @returns {Map<string, number>}
 */
export function wakeSample(roots) {
  const m = new Map();
  for (const root of roots) {
    for (const pid of processTree(root)) {
      let tids = [];
      try {
        tids = fs.readdirSync(`/proc/${pid}/task`);
      } catch {
        continue; // exited
      }
      for (const tid of tids) {
        try {
          const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
          const n = status.match(/^voluntary_ctxt_switches:\s+(\d+)/m);
          if (n) m.set(`${pid}/${tid}`, Number(n[1]));
        } catch {
          /* exited */
        }
      }
    }
  }
  return m;
}

/**
 * CPU seconds spent between two samples (a process born in between counts from zero); also
 * the wake-ups between two wakeSample()s, keyed by thread.
 */
export function cpuDelta(before, after) {
  let s = 0;
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0);
  return s;
}

/** Resident memory of one process, MiB. */
export function rssMiB(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Rows of /proc/net/tcp and tcp6: { local, remote, state } with "addr:PORT" in hex. */
function tcpSockets() {
  const rows = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length >= 4) rows.push({ local: cols[1], remote: cols[2], state: cols[3] });
    }
  }
  return rows;
}

const hexPort = (port) => `:${port.toString(16).toUpperCase().padStart(4, '0')}`;

/** Established TCP connections whose remote end is `port` on this machine (the clients of a server). */
export function tcpConnectionsTo(port) {
  return tcpSockets().filter((r) => r.state === '01' && r.remote.endsWith(hexPort(port))).length; // 01 ESTABLISHED
}

/**
 * Connected clients of the unix socket at `socketPath` (read from /proc/net/unix: a server's
 * accepted sockets carry its path, state 03 connected; the listener's state is 01).
 */
export function unixConnectionsTo(socketPath) {
  let text = '';
  try {
    text = fs.readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return 0;
  }
  let n = 0;
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 8 && cols[5] === '03' && cols.slice(7).join(' ') === socketPath) n++;
  }
  return n;
}

/** RFB clients connected to the bench desktop over `rfb` (see desktop.mjs `rfbTarget`). */
export function rfbClientsOf(rfb) {
  return rfb.socket !== undefined ? unixConnectionsTo(rfb.socket) : tcpConnectionsTo(rfb.port);
}

/** Whether something listens on TCP `port` (read from /proc: no connection is made). */
export function tcpListening(port) {
  return tcpSockets().some((r) => r.state === '0A' && r.local.endsWith(hexPort(port))); // 0A LISTEN
}

/**
 * Nearest-rank percentiles.
 * @param {number[]} samples
 * @param {number[]} ps e.g. [50, 95, 99]
 * @returns {Record<string, number | null>} keyed p50, p95, …
 */
export function percentiles(samples, ps) {
  const sorted = [...samples].sort((a, b) => a - b);
  const out = {};
  for (const p of ps) {
    out[`p${p}`] = sorted.length
      ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
      : null;
  }
  return out;
}

/**
 * Compare a viewer's canvas with the reference framebuffer over a rectangle (default: all),
 * leaving out `exclude` (the pointer: Xvnc draws the cursor into the picture it sends a client
 * whenever the pointer was last moved by someone else, here xdotool, while `xwd` has no
 * cursor). RGB only (both are opaque). PSNR is null when the pictures are identical (infinite).
 * @param {{ width: number, height: number, rgba: Buffer | Uint8Array }} ref
 * @param {{ width: number, height: number, rgba: Buffer | Uint8Array }} got
 * @param {{ x: number, y: number, w: number, h: number }} [roi]
 * @param {{ x: number, y: number, w: number, h: number }} [exclude]
 */
export function compareImages(ref, got, roi, exclude) {
  if (ref.width !== got.width || ref.height !== got.height) {
    return {
      error: `size differs: desktop ${ref.width}x${ref.height}, canvas ${got.width}x${got.height}`,
    };
  }
  const r = clampRect(roi ?? { x: 0, y: 0, w: ref.width, h: ref.height }, ref.width, ref.height);
  const ex = exclude ?? { x: 0, y: 0, w: 0, h: 0 };
  let pixels = 0;
  let mismatched = 0;
  let sq = 0;
  let maxErr = 0;
  for (let y = r.y; y < r.y + r.h; y++) {
    let i = (y * ref.width + r.x) * 4;
    const rowExcluded = y >= ex.y && y < ex.y + ex.h;
    for (let x = r.x; x < r.x + r.w; x++, i += 4) {
      if (rowExcluded && x >= ex.x && x < ex.x + ex.w) continue;
      pixels++;
      const dr = ref.rgba[i] - got.rgba[i];
      const dg = ref.rgba[i + 1] - got.rgba[i + 1];
      const db = ref.rgba[i + 2] - got.rgba[i + 2];
      if (dr || dg || db) {
        mismatched++;
        sq += dr * dr + dg * dg + db * db;
        maxErr = Math.max(maxErr, Math.abs(dr), Math.abs(dg), Math.abs(db));
      }
    }
  }
  const mse = pixels ? sq / (pixels * 3) : 0;
  return {
    rect: r,
    excluded: exclude ?? null,
    pixels,
    mismatched,
    exactPct: (100 * (pixels - mismatched)) / pixels,
    psnrDb: mse === 0 ? null : 10 * Math.log10((255 * 255) / mse),
    maxErr,
  };
}

function clampRect(r, w, h) {
  const x = Math.max(0, Math.min(w, r.x));
  const y = Math.max(0, Math.min(h, r.y));
  return { x, y, w: Math.max(0, Math.min(w - x, r.w)), h: Math.max(0, Math.min(h - y, r.h)) };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Combine repeated measurements of one workload and viewer: the median of every figure
 * (a null PSNR, i.e. identical pictures, counts as infinitely good), and latency percentiles
 * over the pooled samples of all repeats.
 * @param {any[]} reps
 */
export function combineRepeats(reps) {
  const combine = (vals, key) => {
    const first = vals.find((v) => v !== undefined && v !== null);
    if (first === undefined) return vals[0];
    if (Array.isArray(first)) return vals.flat();
    if (typeof first === 'number') {
      const nums =
        key === 'psnrDb'
          ? vals.map((v) => (v === null ? Infinity : v))
          : vals.filter((v) => typeof v === 'number');
      const m = median(nums);
      return m === Infinity ? null : m;
    }
    if (typeof first === 'object') {
      const out = {};
      for (const k of Object.keys(first))
        out[k] = combine(
          vals.map((v) => v?.[k]),
          k,
        );
      return out;
    }
    return first;
  };
  const out = combine(reps, '');
  const samples = reps.flatMap((r) => r.latency?.samples ?? []);
  out.latency = {
    ...out.latency,
    n: samples.length,
    ...percentiles(samples, [50, 95, 99]),
    max: samples.length ? Math.max(...samples) : null,
    samples,
  };
  out.repeats = reps.length;
  return out;
}
