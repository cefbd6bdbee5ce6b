// What one picture of a video region costs the server: turning the region's RGBX pixels into
// what the encoder reads, writing it down the pipe, and ffmpeg/x264 reading and encoding it,
// for a 640x480 region (coded at full size) and a full-screen 1920x1080 one (coded at half
// size). `gateway` is this way (i420.ts: the gateway converts and scales, ffmpeg gets I420);
// `ffmpeg-rgb` is the way before it, for comparison (the region copied out as RGBX, ffmpeg
// scaling and converting with swscale). Photo-like moving pictures (a plasma and film grain,
// as the bench's animation draws), one picture at a time as a viewer's encoder takes them.
//
//   node server/bench/video-picture-micro.mjs [PICTURES=150]     (after a build)
import { spawn } from 'node:child_process';
import { codedSize, i420Bytes, rgbxToI420 } from '../dist/stream/video/i420.js';
import { extract } from '../dist/stream/classify.js';
import { ffmpegArgs } from '../dist/stream/video/encoder.js';
import { FlvH264Reader } from '../dist/stream/video/flv-reader.js';
import { cpuSample } from './metrics.mjs';

const PICTURES = Number(process.argv[2] ?? 150);

function frames(W, H, n) {
  const out = [];
  for (let f = 0; f < n; f++) {
    const b = Buffer.alloc(W * H * 4);
    let v = 0x9e3779b9 ^ f;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        v ^= v << 13;
        v ^= v >>> 17;
        v ^= v << 5;
        const p = (Math.sin(x / 50 + f / 5) + Math.sin(y / 37 - f / 7)) * 55 + 128;
        const i = (y * W + x) * 4;
        b[i] = p + (v & 15);
        b[i + 1] = 200 - p / 2 + ((v >>> 8) & 15);
        b[i + 2] = (p * 2) & 255;
      }
    out.push(b);
  }
  return out;
}

function legacyArgs(spec) {
  const d = spec.downscale ?? 1;
  const even = (n) => Math.max(2, Math.round(n / 2) * 2);
  const args = ffmpegArgs(spec);
  const size = args.indexOf('-s');
  args.splice(args.indexOf('-pix_fmt'), 2, '-pix_fmt', 'rgb0');
  args[size + 1] = `${spec.width}x${spec.height}`;
  const out = args.indexOf('-c:v');
  const vf =
    d === 1
      ? []
      : ['-vf', `scale=${even(spec.width / d)}:${even(spec.height / d)}:flags=fast_bilinear`];
  args.splice(out, 0, ...vf, '-pix_fmt', 'yuv420p');
  return args;
}

/** CPU seconds of a child so far (before it exits) */
const childCpu = (pid) => cpuSample([pid]).get(pid) ?? 0;

async function run(way, W, H, downscale, fb) {
  const spec = { width: W, height: H, kbps: 2000, fps: 30, downscale };
  const args = way === 'gateway' ? ffmpegArgs(spec) : legacyArgs(spec);
  const child = spawn('ffmpeg', args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const reader = new FlvH264Reader();
  let chunks = 0;
  let wake;
  child.stdout.on('data', (d) => {
    chunks += reader.push(d).length;
    wake?.();
  });
  const { w, h } = codedSize(W, H, downscale);
  const picture = Buffer.allocUnsafe(way === 'gateway' ? i420Bytes(w, h) : W * H * 4);
  const region = { x: 0, y: 0, w: W, h: H };
  let prepareNs = 0n;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < PICTURES; i++) {
    const t = process.hrtime.bigint();
    if (way === 'gateway') rgbxToI420(fb[i % fb.length], W, region, downscale, picture);
    else extract(fb[i % fb.length], W, 0, 0, W, H, picture);
    prepareNs += process.hrtime.bigint() - t;
    await new Promise((resolve) => child.stdin.write(picture, resolve));
    while (chunks < i + 1) await new Promise((resolve) => (wake = resolve));
  }
  const cpu = process.cpuUsage(cpu0);
  const ffmpegSec = childCpu(child.pid);
  child.stdin.end();
  await new Promise((resolve) => child.on('close', resolve));
  const per = (x) => Number(((x * 1000) / PICTURES).toFixed(2));
  console.log(
    JSON.stringify({
      way,
      region: `${W}x${H}`,
      coded: `${w}x${h}`,
      pictures: PICTURES,
      prepareMsPerPicture: per(Number(prepareNs) / 1e9),
      nodeCpuMsPerPicture: per((cpu.user + cpu.system) / 1e6),
      ffmpegCpuMsPerPicture: per(ffmpegSec),
      totalCpuMsPerPicture: per((cpu.user + cpu.system) / 1e6 + ffmpegSec),
    }),
  );
}

for (const [W, H, d] of [
  [640, 480, 1],
  [1920, 1080, 2],
]) {
  const fb = frames(W, H, 6);
  for (const way of ['ffmpeg-rgb', 'gateway']) await run(way, W, H, d, fb);
}
