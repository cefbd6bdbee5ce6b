#!/usr/bin/env node
// Where a Node process's CPU went, from Linux perf's samples rather than V8's profiler (whose
// 1 ms sampling thread multiplied the gateway's CPU by ten on a typing desktop): the time by
// what ran (optimised JavaScript, baseline or interpreted JavaScript and the builtins it calls,
// the optimising compiler's threads, garbage collection, the kernel), by part of the system
// (the innermost JavaScript function of each sample, with the builtins and native code below
// it), and the functions that cost the most, inclusive and self.
//
//   BENCH_SERVER_NODE_ARGS='--perf-basic-prof' npm run bench -- --viewers=vdi --workloads=typing
//   perf record -e cpu-clock -F 997 -g -p <the server's pid> -o /tmp/perf.data   (meanwhile)
//   perf script -i /tmp/perf.data > /tmp/perf.txt
//   node server/bench/perf-summary.mjs /tmp/perf.txt [--from=S] [--to=S] [--top=N] [--timeline]
//
// --from/--to keep the samples taken that many seconds after the first one (one phase of a
// bench run); --timeline prints the samples of every second first, to find the phases.
// `--perf-basic-prof` names JIT code in /tmp/perf-PID.map; V8 reuses the addresses of code it
// has freed, and perf may then give a sample the name of the function that was there first
// (seen: node's CommonJS lexer, compiled at start-up, standing for the tick queue): a name
// that makes no sense is read from its stack.
import fs from 'node:fs';
import { partOfScript, shortUrl } from './profile-parts.mjs';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const opt = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const top = Number(opt('top') ?? 25);
const from = Number(opt('from') ?? 0);
const to = Number(opt('to') ?? Infinity);
if (!file) {
  console.error(
    'usage: perf-summary.mjs PERF-SCRIPT.txt [--top=N] [--from=S] [--to=S] [--timeline]',
  );
  process.exit(2);
}

/** one sample: its time and its frames, innermost first */
function* samples(text) {
  let head;
  let frames = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (head) yield { ...head, frames };
      head = undefined;
      frames = [];
    } else if (/^\s/.test(line)) {
      const m = /^\s+[0-9a-f]+ (.*?)(?:\+0x[0-9a-f]+)? \((.*)\)$/.exec(line);
      if (m) frames.push({ sym: m[1], dso: m[2] });
    } else {
      const m = /^(\S+)\s+(\d+)(?:\/(\d+))?\s+([\d.]+):/.exec(line);
      if (m)
        head = { comm: m[1], pid: Number(m[2]), tid: Number(m[3] ?? m[2]), time: Number(m[4]) };
    }
  }
  if (head) yield { ...head, frames };
}

const isJs = (f) => f.sym.startsWith('JS:');
/** `JS:^name url:line:col` → { name, url } (`*` optimised, `^` baseline, `~` interpreted) */
function jsFrame(sym) {
  const m = /^JS:[*^~]?(.*?) ((?:file:\/\/|node:|\/).*?)(?::\d+:\d+)?$/.exec(sym);
  return m ? { name: m[1] || '(anonymous)', url: m[2] } : { name: sym, url: '' };
}
/** what was running at a sample's innermost frame */
function whatRan(frames) {
  const leaf = frames[0];
  const stack = frames.map((f) => f.sym).join('\n');
  if (/PlatformWorkerThread/.test(stack)) {
    if (/compiler::|Compile/.test(stack)) return 'optimising compiler (background threads)';
    return 'garbage collection (background threads)';
  }
  if (/uv__threadpool|uv_thread/.test(stack) && !/uv_run/.test(stack))
    return 'libuv thread pool (zlib, sharp, fs)';
  if (!leaf) return 'unknown';
  if (leaf.dso.includes('kernel')) return 'kernel (system calls, scheduling)';
  if (leaf.sym.startsWith('JS:*')) return 'optimised JavaScript';
  if (leaf.sym.startsWith('JS:')) return 'baseline or interpreted JavaScript';
  if (/Heap|Scaveng|Marking|Sweep|GC|MarkCompact/.test(leaf.sym)) return 'garbage collection';
  if (/compiler::|Compile/.test(leaf.sym)) return 'compiler (main thread)';
  if (leaf.sym.startsWith('Builtins_')) {
    // a builtin called by optimised code is part of it; by baseline code, its slow path
    const caller = frames.find(isJs);
    return caller?.sym.startsWith('JS:*')
      ? 'optimised JavaScript'
      : 'baseline or interpreted JavaScript';
  }
  return 'other native (V8 runtime, libuv, libc)';
}

const text = fs.readFileSync(file, 'utf8');
let t0;
const perSecond = [];
const kinds = new Map();
const parts = new Map();
const inclusive = new Map();
const self = new Map();
let n = 0;
const bump = (m, k) => m.set(k, (m.get(k) ?? 0) + 1);
for (const s of samples(text)) {
  t0 ??= s.time;
  const at = s.time - t0;
  perSecond[Math.floor(at)] = (perSecond[Math.floor(at)] ?? 0) + 1;
  if (at < from || at >= to) continue;
  n++;
  bump(kinds, whatRan(s.frames));
  const js = s.frames.filter(isJs).map((f) => jsFrame(f.sym));
  const inner = js[0];
  bump(
    parts,
    inner ? (partOfScript(inner.url) ?? 'other JavaScript') : 'no JavaScript on the stack',
  );
  if (inner) bump(self, `${inner.name} ${shortUrl(inner.url)}`);
  for (const key of new Set(js.map((f) => `${f.name} ${shortUrl(f.url)}`))) bump(inclusive, key);
}
for (let i = 0; i < perSecond.length; i++) perSecond[i] ??= 0;
if (args.includes('--timeline')) {
  console.log('samples per second since the first sample:');
  console.log(perSecond.map((c, i) => `${i}:${c}`).join(' '));
  console.log();
}
const pct = (c) => ((100 * c) / n).toFixed(1);
/** `code`: the rows are function names, shown as code */
const table = (title, m, { limit = Infinity, code = false } = {}) => {
  console.log(`| ${title} | samples | share |\n|---|---:|---:|`);
  for (const [k, c] of [...m].sort((a, b) => b[1] - a[1]).slice(0, limit))
    console.log(`| ${code ? `\`${k}\`` : k} | ${c} | ${pct(c)} % |`);
  console.log();
};
console.log(
  `${file}: ${n} samples${Number.isFinite(to) || from > 0 ? ` from ${from} s to ${to} s` : ''}\n`,
);
table('what ran', kinds);
table('part (innermost JavaScript function, with what it called)', parts);
table(`top ${top} functions, inclusive`, inclusive, { limit: top, code: true });
table(`top ${top} functions, self (with the builtins and native code they called)`, self, {
  limit: top,
  code: true,
});
