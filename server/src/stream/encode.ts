import sharp from 'sharp';
import { metrics } from '../metrics.js';
import { Codec, packIndices, type FrameRect } from '@vdi/shared';
import { analyse, extract, type Analysis } from './classify.js';
import type { DeflateStream } from './deflate-stream.js';
import type { EncodeJob } from './frame-plan.js';

// One encode at a time per libvips call: our parallelism comes from encoding several rects
// at once on the libuv pool, not from splitting one image across threads.
sharp.concurrency(1);
sharp.cache(false);

/** Below this many pixels a lossless rect goes through zlib in-process (no sharp call overhead). */
export const SMALL_RECT_PIXELS = 64 * 64 * 4;
/** JPEG only pays off above this many pixels (guacd uses the same bound). */
export const JPEG_MIN_PIXELS = 4096;

export interface EncodeHints {
  /** lossy quality 1..100 to use where lossy is allowed */
  quality: number;
  /** lossy allowed for this rect (content is changing fast, or the viewer is behind) */
  allowLossy: boolean;
  /**
   * the viewer's zlib stream; segments must be taken in rect order, so encodeRect calls it
   * before its first await
   */
  zlib: DeflateStream;
}

export interface EncodedRect extends FrameRect {
  lossy: boolean;
}

function rgbFromRgbx(pixels: Uint8Array, n: number): Buffer {
  const out = Buffer.allocUnsafe(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const s = i * 4;
    out[j] = pixels[s]!;
    out[j + 1] = pixels[s + 1]!;
    out[j + 2] = pixels[s + 2]!;
  }
  return out;
}

async function encodePalette(
  a: Extract<Analysis, { kind: 'palette' }>,
  w: number,
  h: number,
  z: DeflateStream,
): Promise<Uint8Array> {
  const n = a.palette.length;
  const packed = packIndices(a.indices, w, h, n);
  // the palette goes into the zlib stream too: the same few colours again (the next glyph
  // of the same text) then cost a couple of bytes instead of 3 per colour
  const plain = Buffer.allocUnsafe(n * 3 + packed.length);
  for (let i = 0; i < n; i++) {
    const c = a.palette[i]!;
    plain[i * 3] = c & 0xff;
    plain[i * 3 + 1] = (c >>> 8) & 0xff;
    plain[i * 3 + 2] = (c >>> 16) & 0xff;
  }
  plain.set(packed, n * 3);
  const body = await z.compress(plain);
  return Buffer.concat([Buffer.of(n - 1), body]);
}

/** A rect whose codec is chosen (synchronously) and whose payload is on its way. */
export interface StartedRect {
  /** it will be sent lossy (known before the encode finishes: the viewer books it at once) */
  lossy: boolean;
  done: Promise<EncodedRect>;
}

/**
 * Encode one rectangle of packed RGBX pixels. The choice: solid → Fill; ≤256 colours →
 * DeflatePalette (exact); many colours → JPEG when lossy is allowed and the rect is big enough,
 * else lossless (zlib RGB when small, PNG when large). The choice is made before this returns;
 * zlib segments are taken before it returns too (in call order).
 */
export function startRect(
  x: number,
  y: number,
  w: number,
  h: number,
  pixels: Buffer,
  hints: EncodeHints,
): StartedRect {
  const a = analyse(pixels, w, h);
  const lossy = a.kind === 'many' && hints.allowLossy && w * h >= JPEG_MIN_PIXELS;
  return { lossy, done: finishRect(x, y, w, h, pixels, a, lossy, hints) };
}

/** startRect, waiting for the payload */
export function encodeRect(
  x: number,
  y: number,
  w: number,
  h: number,
  pixels: Buffer,
  hints: EncodeHints,
): Promise<EncodedRect> {
  return startRect(x, y, w, h, pixels, hints).done;
}

async function finishRect(
  x: number,
  y: number,
  w: number,
  h: number,
  pixels: Buffer,
  a: Analysis,
  lossy: boolean,
  hints: EncodeHints,
): Promise<EncodedRect> {
  const n = w * h;
  if (a.kind === 'solid') {
    return {
      x,
      y,
      w,
      h,
      codec: Codec.Fill,
      payload: Uint8Array.of(a.r, a.g, a.b, 255),
      lossy: false,
    };
  }
  if (a.kind === 'palette') {
    return {
      x,
      y,
      w,
      h,
      codec: Codec.DeflatePalette,
      payload: await encodePalette(a, w, h, hints.zlib),
      lossy: false,
    };
  }
  if (lossy) {
    const payload = await sharp(pixels, { raw: { width: w, height: h, channels: 4 } })
      .removeAlpha()
      .jpeg({
        quality: hints.quality,
        optimiseCoding: false,
        chromaSubsampling: hints.quality >= 90 ? '4:4:4' : '4:2:0',
      })
      .toBuffer();
    return { x, y, w, h, codec: Codec.Jpeg, payload, lossy: true };
  }
  if (n <= SMALL_RECT_PIXELS) {
    const payload = await hints.zlib.compress(rgbFromRgbx(pixels, n));
    return { x, y, w, h, codec: Codec.DeflateRgb, payload, lossy: false };
  }
  const payload = await sharp(pixels, { raw: { width: w, height: h, channels: 4 } })
    .removeAlpha()
    .png({ compressionLevel: 1, adaptiveFiltering: false })
    .toBuffer();
  return { x, y, w, h, codec: Codec.Png, payload, lossy: false };
}

/**
 * Encode a frame plan's rects from a framebuffer (RGBX, stride fbWidth*4), in parallel. The
 * pixels are copied out and every rect's codec chosen before this returns (the mirror keeps
 * changing while they encode), and the zlib segments are taken in job order, as the client
 * inflates them.
 */
export function startJobs(
  jobs: readonly EncodeJob[],
  fb: Buffer,
  fbWidth: number,
  hints: Omit<EncodeHints, 'allowLossy'>,
): { lossy: boolean[]; done: Promise<EncodedRect[]> } {
  const end = metrics.encodeSeconds.startTimer();
  const started = jobs.map((j) =>
    startRect(j.x, j.y, j.w, j.h, extract(fb, fbWidth, j.x, j.y, j.w, j.h), {
      ...hints,
      allowLossy: j.allowLossy,
    }),
  );
  return {
    lossy: started.map((s) => s.lossy),
    done: Promise.all(started.map((s) => s.done)).finally(() => end()),
  };
}

/** startJobs, waiting for the payloads */
export function encodeJobs(
  jobs: readonly EncodeJob[],
  fb: Buffer,
  fbWidth: number,
  hints: Omit<EncodeHints, 'allowLossy'>,
): Promise<EncodedRect[]> {
  return startJobs(jobs, fb, fbWidth, hints).done;
}
