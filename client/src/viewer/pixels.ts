/**
 * The two deflate codecs (shared/src/frame.ts): DeflateRgb and DeflatePalette → RGBA.
 * Their data comes from the viewer's zlib stream (inflate-stream.ts, on DecompressionStream).
 * Strict: the inflated size must be exactly what the rect needs (no partial tiles,
 * no decompression bombs), and palette indices must be in range.
 */

import { packedSize, unpackIndices } from '@vdi/shared';
import type { InflateStream } from './inflate-stream';
import { PixelFormatError } from './pixel-format-error';

/** R, G, B triplets → opaque RGBA. */
export function rgbToRgba(rgb: Uint8Array, pixels: number): Uint8ClampedArray<ArrayBuffer> {
  if (rgb.byteLength !== pixels * 3) throw new PixelFormatError('RGB data has the wrong length');
  const out = new Uint8ClampedArray(pixels * 4);
  for (let i = 0, j = 0; i < pixels; i++, j += 3) {
    const o = i * 4;
    out[o] = rgb[j]!;
    out[o + 1] = rgb[j + 1]!;
    out[o + 2] = rgb[j + 2]!;
    out[o + 3] = 255;
  }
  return out;
}

/** Palette indices → opaque RGBA. `palette` is paletteSize × (R, G, B). */
export function paletteToRgba(
  palette: Uint8Array,
  indices: Uint8Array,
): Uint8ClampedArray<ArrayBuffer> {
  const size = palette.byteLength / 3;
  // Expand the palette to 32-bit words once; the per-pixel loop is then one store.
  const words = new Uint32Array(size);
  const bytes = new Uint8Array(words.buffer);
  for (let i = 0; i < size; i++) {
    bytes[i * 4] = palette[i * 3]!;
    bytes[i * 4 + 1] = palette[i * 3 + 1]!;
    bytes[i * 4 + 2] = palette[i * 3 + 2]!;
    bytes[i * 4 + 3] = 255;
  }
  const out = new Uint8ClampedArray(indices.byteLength * 4);
  const outWords = new Uint32Array(out.buffer);
  for (let i = 0; i < indices.byteLength; i++) {
    const index = indices[i]!;
    if (index >= size)
      throw new PixelFormatError(`palette index ${index} out of range (size ${size})`);
    outWords[i] = words[index]!;
  }
  return out;
}

/** DeflateRgb payload: a zlib-stream segment of w×h×3 bytes. */
export async function decodeDeflateRgb(
  payload: Uint8Array,
  w: number,
  h: number,
  zlib: InflateStream,
): Promise<Uint8ClampedArray<ArrayBuffer>> {
  const rgb = await zlib.inflate(payload, w * h * 3);
  return rgbToRgba(rgb, w * h);
}

/**
 * DeflatePalette payload: u8 (size - 1), then a zlib-stream segment holding size × RGB and the
 * packed w×h indices.
 */
export async function decodeDeflatePalette(
  payload: Uint8Array,
  w: number,
  h: number,
  zlib: InflateStream,
): Promise<Uint8ClampedArray<ArrayBuffer>> {
  if (payload.byteLength < 1) throw new PixelFormatError('palette payload is empty');
  const size = payload[0]! + 1;
  const plain = await zlib.inflate(payload.subarray(1), size * 3 + packedSize(w, h, size));
  return paletteToRgba(
    plain.subarray(0, size * 3),
    unpackIndices(plain.subarray(size * 3), w, h, size),
  );
}
