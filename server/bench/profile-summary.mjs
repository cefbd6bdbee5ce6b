#!/usr/bin/env node
// Where a process's CPU time went, from a V8 CPU profile (`node --cpu-prof`, e.g. the bench's
// server with BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR'): self time by part of
// the system (the stream, the RFB link, Socket.IO and ws, zlib, the store, GC, ...) and the
// functions that cost the most. Idle time is left out of the shares.
//
//   node server/bench/profile-summary.mjs DIR/CPU.*.cpuprofile [--top=25] [--from=S] [--to=S]
//     [--timeline]
// --from/--to keep only the samples taken that many seconds after the profile started (one
// phase of a bench run); --timeline prints the busy milliseconds of every second first, to
// find the phases.
import fs from 'node:fs';
import { partOfScript, shortUrl } from './profile-parts.mjs';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const opt = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const top = Number(opt('top') ?? 25);
const fromUs = Number(opt('from') ?? 0) * 1e6;
const toUs = Number(opt('to') ?? Infinity) * 1e6;
if (!file) {
  console.error(
    'usage: profile-summary.mjs FILE.cpuprofile [--top=N] [--from=S] [--to=S] [--timeline]',
  );
  process.exit(2);
}
const prof = JSON.parse(fs.readFileSync(file, 'utf8'));

/** the part of the system a frame of the profile belongs to */
function partOf(frame) {
  const { functionName: fn, url } = frame;
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'garbage collection';
  if (fn === '(program)') return 'native (V8, libuv, outside JS)';
  const part = partOfScript(url);
  if (part) return part;
  return url ? 'other JS' : 'native builtins (microtasks, fs, ...)';
}

const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const idleIds = new Set(
  prof.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id),
);
const self = new Map();
/** busy µs per second since the profile started */
const perSecond = [];
let at = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  const dt = prof.timeDeltas[i] ?? 0;
  at += dt;
  if (!idleIds.has(id))
    perSecond[Math.floor(at / 1e6)] = (perSecond[Math.floor(at / 1e6)] ?? 0) + dt;
  if (at < fromUs || at >= toUs) continue;
  self.set(id, (self.get(id) ?? 0) + dt);
}
if (args.includes('--timeline')) {
  console.log('busy ms per second since the profile started:');
  console.log(Array.from(perSecond, (us, s) => `${s}:${((us ?? 0) / 1000).toFixed(0)}`).join(' '));
  console.log();
}
const parts = new Map();
const fns = new Map();
let total = 0;
let idle = 0;
for (const [id, us] of self) {
  const frame = byId.get(id).callFrame;
  const part = partOf(frame);
  if (part === 'idle') {
    idle += us;
    continue;
  }
  total += us;
  parts.set(part, (parts.get(part) ?? 0) + us);
  const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '';
  const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
  fns.set(key, (fns.get(key) ?? 0) + us);
}
const ms = (us) => (us / 1000).toFixed(0);
const pct = (us) => ((100 * us) / total).toFixed(1);
const wall = (Math.min(toUs, prof.endTime - prof.startTime) - fromUs) / 1e6;
console.log(
  `${file}: ${wall.toFixed(1)} s profiled, ${ms(total)} ms busy (${((100 * total) / (total + idle)).toFixed(1)} % of the sampled time), idle left out\n`,
);
console.log('| part | self ms | share of busy |\n|---|---:|---:|');
for (const [part, us] of [...parts].sort((a, b) => b[1] - a[1]))
  console.log(`| ${part} | ${ms(us)} | ${pct(us)} % |`);
console.log(`\n| top ${top} functions (self) | self ms | share of busy |\n|---|---:|---:|`);
for (const [fn, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`| \`${fn.replace(/\|/g, '\\|')}\` | ${ms(us)} | ${pct(us)} % |`);
