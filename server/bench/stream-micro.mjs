// The stream's per-frame fixed cost without a desktop or a browser: one mirror, one viewer
// whose frames are acknowledged at once, fed typing-like damage (an anti-aliased glyph cell
// and the text cursor, 60 updates) and a 64x32 probe (solid colour cells, as the bench's
// time code). Reports CPU (process.cpuUsage: main thread + libuv pool) per frame.
// `node server/bench/stream-micro.mjs` after a build.
import pino from 'pino';
import { DesktopStream } from '../dist/stream/desktop-stream.js';

const W = 1280;
const H = 800;
const FRAMES = Number(process.argv[2] ?? 3000);
const log = pino({ level: 'silent' });
const clock = { t: 0, now: () => clock.t };

function glyph(seed) {
  // 9x18 anti-aliased text cell: ~12 grey levels on white
  const px = Buffer.alloc(9 * 18 * 4);
  for (let i = 0; i < 9 * 18; i++) {
    const v = Math.imul(i + seed * 31, 2654435761) >>> 28; // 0..15
    const g = v < 10 ? 255 : 255 - (v - 9) * 40;
    px.set([g, g, g, 0], i * 4);
  }
  return px;
}

async function run(kind) {
  const stream = new DesktopStream('d', clock, log, { cursor() {}, clipboard() {} });
  stream.resize(W, H);
  stream.idle();
  let sent = 0;
  let bytes = 0;
  const viewer = stream.attach({
    send: (b) => {
      sent++;
      bytes += b.byteLength;
      const seq = new DataView(b.buffer, b.byteOffset).getUint32(4, true);
      queueMicrotask(() => viewer.ack(seq));
    },
    maxInFlight: 2,
    onError: (e) => {
      throw e;
    },
    setTimer: () => ({ cancel() {} }),
  });
  stream.updateEnd();
  while (viewer.encoding || sent === 0) await new Promise((r) => setImmediate(r));
  const cursor = Buffer.alloc(9 * 18 * 4, 0);
  const probe = (i) => {
    const px = Buffer.alloc(64 * 32 * 4);
    for (let c = 0; c < 8; c++) {
      const v = (i >> c) & 1 ? 255 : 0;
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 8; x++)
          px.fill(v, (y * 64 + c * 8 + x) * 4, (y * 64 + c * 8 + x) * 4 + 3);
    }
    return px;
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sent0 = sent;
  for (let i = 0; i < FRAMES; i++) {
    clock.t += 16;
    if (kind === 'typing') {
      const col = i % 100;
      const row = Math.floor(i / 100) % 40;
      stream.putPixels(20 + col * 9, 40 + row * 18, 9, 18, glyph(i));
      stream.putPixels(20 + (col + 1) * 9, 40 + row * 18, 9, 18, cursor);
    } else stream.putPixels(W - 64, 0, 64, 32, probe(i));
    stream.updateEnd();
    while (viewer.encoding) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  const cpu = process.cpuUsage(cpu0);
  const ms = performance.now() - t0;
  const frames = sent - sent0;
  viewer.close();
  return {
    kind,
    frames,
    cpuUsPerFrame: Math.round((cpu.user + cpu.system) / frames),
    wallUsPerFrame: Math.round((ms * 1000) / frames),
    bytesPerFrame: Math.round(bytes / sent),
  };
}

for (const k of ['typing', 'probe', 'typing', 'probe']) console.log(JSON.stringify(await run(k)));
