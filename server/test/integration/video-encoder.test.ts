/**
 * Video mode's encoder against the real thing: Debian's ffmpeg with libx264 as a child
 * process. Pictures in, Annex-B chunks out that a real decoder (ffmpeg's own) turns back into
 * the pictures; the child bounded and killed.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  FfmpegEncoder,
  MAX_PENDING_PICTURES,
  ffmpegArgs,
  type EncoderSpec,
} from '../../src/stream/video/encoder.js';
import { codedSize, i420Bytes, rgbxToI420 } from '../../src/stream/video/i420.js';
import {
  FlvFormatError,
  FlvH264Reader,
  type H264Chunk,
} from '../../src/stream/video/flv-reader.js';
import { until } from '../helpers/server.js';

const spec: EncoderSpec = { width: 320, height: 240, kbps: 2000, fps: 30 };

/** a picture with a bright square moving over a gradient (RGBX) */
function picture(i: number, { width, height } = spec): Buffer {
  const px = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      const inSquare = x >= i * 8 && x < i * 8 + 64 && y >= 80 && y < 144;
      px[o] = inSquare ? 250 : (x * 255) / width;
      px[o + 1] = inSquare ? 240 : (y * 255) / height;
      px[o + 2] = inSquare ? 30 : 128;
    }
  return px;
}

/** picture(i) as the encoder takes it: I420 of the spec's coded size */
function i420(i: number, s: EncoderSpec = spec): Buffer {
  const { w, h } = codedSize(s.width, s.height, s.downscale ?? 1);
  const region = { x: 0, y: 0, w: s.width, h: s.height };
  return rgbxToI420(
    picture(i, s),
    s.width,
    region,
    s.downscale ?? 1,
    Buffer.alloc(i420Bytes(w, h)),
  );
}

/** NAL unit types of an Annex-B chunk */
function nalTypes(data: Buffer): number[] {
  const types: number[] = [];
  for (let i = 0; i + 4 < data.length; i++)
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 0 && data[i + 3] === 1)
      types.push(data[i + 4]! & 0x1f);
  return types;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('ffmpeg/x264 encoder of a video region', () => {
  it('turns pictures into Annex-B chunks a decoder reads back, one chunk per picture', async () => {
    const chunks: H264Chunk[] = [];
    const failures: Error[] = [];
    const enc = new FfmpegEncoder(spec, {
      chunk: (c) => chunks.push(c),
      failed: (e) => failures.push(e),
    });
    const pictures = 12;
    /** the encoder's own picture buffers this test was given */
    const buffers = new Set<Buffer>();
    try {
      for (let i = 0; i < pictures; i++) {
        // one at a time, as a viewer does: the next picture once the last came back, filled
        // into a buffer the encoder lends (written to the pipe by then, so free again)
        const buf = enc.picture();
        buffers.add(buf);
        i420(i).copy(buf);
        expect(enc.encode(buf)).toBe(true);
        await until(() => chunks.length === i + 1, 20_000, `chunk ${i}`);
        expect(enc.pending).toBe(0);
      }
    } finally {
      enc.close();
    }
    expect(failures).toEqual([]);
    expect(buffers.size).toBe(1); // no picture allocated after the first
    expect(chunks[0]!.key).toBe(true);
    expect(chunks[0]!.codec).toMatch(/^avc1\.42[0-9A-F]{4}$/);
    // the key chunk carries its parameter sets (SPS 7, PPS 8) before the IDR slice (5)
    const keyTypes = nalTypes(chunks[0]!.data);
    expect(keyTypes.indexOf(7)).toBeLessThan(keyTypes.indexOf(5));
    expect(keyTypes).toContain(8);
    for (const c of chunks.slice(1)) {
      expect(c.key).toBe(false);
      expect(nalTypes(c.data)).toContain(1);
      expect(nalTypes(c.data)).not.toContain(7);
    }
    // a real decoder reads the chunks back as the pictures (lossy: close, not equal)
    const raw = spawnSync(
      'ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-f', 'h264', '-i', 'pipe:0'],
        ...['-f', 'rawvideo', '-pix_fmt', 'rgb0', 'pipe:1'],
      ],
      { input: Buffer.concat(chunks.map((c) => c.data)), maxBuffer: 64 << 20 },
    );
    expect(raw.status).toBe(0);
    const size = spec.width * spec.height * 4;
    expect(raw.stdout.length).toBe(size * pictures);
    for (const i of [0, pictures - 1]) {
      const want = picture(i);
      const got = raw.stdout.subarray(i * size, (i + 1) * size);
      let err = 0;
      for (let p = 0; p < size; p += 4)
        err += Math.abs(want[p]! - got[p]!) + Math.abs(want[p + 1]! - got[p + 1]!);
      expect(err / (size / 2)).toBeLessThan(6); // mean abs error per sample, 0..255
    }
  });

  it('holds at most MAX_PENDING_PICTURES: more pictures are dropped, not queued', () => {
    const enc = new FfmpegEncoder(spec, { chunk: () => undefined, failed: () => undefined });
    try {
      const accepted = Array.from({ length: 6 }, (_, i) => enc.encode(i420(i))).filter(Boolean);
      expect(accepted).toHaveLength(MAX_PENDING_PICTURES);
      expect(enc.pending).toBe(MAX_PENDING_PICTURES);
      expect(() => enc.encode(Buffer.alloc(16))).not.toThrow(); // dropped before it is looked at
    } finally {
      enc.close();
    }
  });

  it('kills its child on close, and reports a child that dies by itself', async () => {
    const enc = new FfmpegEncoder(spec, { chunk: () => undefined, failed: () => undefined });
    const pid = enc.pid!;
    expect(alive(pid)).toBe(true);
    enc.close();
    await enc.exited;
    expect(alive(pid)).toBe(false);

    const failures: Error[] = [];
    const dying = new FfmpegEncoder(spec, {
      chunk: () => undefined,
      failed: (e) => failures.push(e),
    });
    process.kill(dying.pid!, 'SIGKILL');
    await dying.exited;
    await until(() => failures.length === 1, 10_000, 'failure reported');
    expect(failures[0]!.message).toMatch(/ffmpeg exited/);

    const missing: Error[] = [];
    new FfmpegEncoder(
      spec,
      { chunk: () => undefined, failed: (e) => missing.push(e) },
      '/nonexistent/ffmpeg',
    );
    await until(() => missing.length === 1, 10_000, 'spawn failure reported');
    expect(missing[0]!.message).toMatch(/ENOENT/);
  });

  it('encodes big regions at half size when asked (the gateway scales, the browser scales back up)', () => {
    const half = { ...spec, downscale: 2 as const };
    const out = spawnSync('ffmpeg', ffmpegArgs(half), {
      input: Buffer.concat([i420(0, half), i420(1, half)]),
      maxBuffer: 64 << 20,
    });
    expect(out.status).toBe(0);
    const chunks = new FlvH264Reader().push(out.stdout);
    expect(chunks).toHaveLength(2);
    const raw = spawnSync(
      'ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-f', 'h264', '-i', 'pipe:0'],
        ...['-f', 'rawvideo', '-pix_fmt', 'rgb0', 'pipe:1'],
      ],
      { input: Buffer.concat(chunks.map((c) => c.data)), maxBuffer: 64 << 20 },
    );
    const hw = spec.width / 2;
    const hh = spec.height / 2;
    expect(raw.stdout.length).toBe(hw * hh * 4 * 2);
    // the second picture, decoded, is the first scaled down: each pixel the mean of 2×2
    const full = picture(1);
    const got = raw.stdout.subarray(hw * hh * 4);
    let err = 0;
    for (let y = 0; y < hh; y++)
      for (let x = 0; x < hw; x++)
        for (let ch = 0; ch < 2; ch++) {
          let sum = 0;
          for (const [dx, dy] of [
            [0, 0],
            [1, 0],
            [0, 1],
            [1, 1],
          ] as const)
            sum += full[((2 * y + dy) * spec.width + 2 * x + dx) * 4 + ch]!;
          err += Math.abs(sum / 4 - got[(y * hw + x) * 4 + ch]!);
        }
    expect(err / (hw * hh * 2)).toBeLessThan(6); // mean abs error per sample, 0..255
  });

  it('reads the FLV stream the same however it is split, and refuses garbage', () => {
    const input = Buffer.concat([0, 1, 2, 3].map((i) => i420(i)));
    const out = spawnSync('ffmpeg', ffmpegArgs(spec), { input, maxBuffer: 64 << 20 });
    expect(out.status).toBe(0);
    const whole = new FlvH264Reader().push(out.stdout);
    expect(whole).toHaveLength(4);
    const reader = new FlvH264Reader();
    const bytewise: H264Chunk[] = [];
    for (let i = 0; i < out.stdout.length; i++)
      bytewise.push(...reader.push(out.stdout.subarray(i, i + 1)));
    expect(bytewise.map((c) => [c.key, c.codec, c.data.toString('hex')])).toEqual(
      whole.map((c) => [c.key, c.codec, c.data.toString('hex')]),
    );
    expect(() => new FlvH264Reader().push(Buffer.from('GIF89a-not-a-flv-stream'))).toThrow(
      FlvFormatError,
    );
    // a picture tag before any decoder configuration
    const bad = Buffer.from(out.stdout);
    const reader2 = new FlvH264Reader();
    expect(() =>
      reader2.push(
        Buffer.concat([bad.subarray(0, 13), tag(9, Buffer.of(0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41))]),
      ),
    ).toThrow(/before the decoder configuration/);
  });
});

/** an FLV tag of `type` around `body` */
function tag(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(11);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  const prev = Buffer.alloc(4);
  prev.writeUInt32BE(11 + body.length);
  return Buffer.concat([h, body, prev]);
}
