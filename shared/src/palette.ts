/**
 * Palette indices of a DeflatePalette rect, packed before deflate: 1, 2, 4 or 8 bits per
 * pixel for palettes of up to 2, 4, 16 or 256 colours; most significant bits first; every
 * row starts on a byte boundary (so a row never shares a byte with the next).
 */
export function bitsPerIndex(paletteSize: number): 1 | 2 | 4 | 8 {
  return paletteSize <= 2 ? 1 : paletteSize <= 4 ? 2 : paletteSize <= 16 ? 4 : 8;
}

export function packedSize(w: number, h: number, paletteSize: number): number {
  return Math.ceil((w * bitsPerIndex(paletteSize)) / 8) * h;
}

export function packIndices(
  indices: Uint8Array,
  w: number,
  h: number,
  paletteSize: number,
): Uint8Array {
  const bits = bitsPerIndex(paletteSize);
  if (bits === 8) return indices;
  const rowBytes = Math.ceil((w * bits) / 8);
  const out = new Uint8Array(rowBytes * h);
  const perByte = 8 / bits;
  for (let y = 0; y < h; y++) {
    const src = y * w;
    const dst = y * rowBytes;
    for (let x = 0; x < w; x++) {
      const shift = 8 - bits * ((x % perByte) + 1);
      out[dst + Math.floor(x / perByte)]! |= indices[src + x]! << shift;
    }
  }
  return out;
}

/** Inverse of packIndices; throws when `packed` is shorter than w×h needs. */
export function unpackIndices(
  packed: Uint8Array,
  w: number,
  h: number,
  paletteSize: number,
): Uint8Array {
  const bits = bitsPerIndex(paletteSize);
  if (packed.length < packedSize(w, h, paletteSize))
    throw new RangeError('palette indices truncated');
  if (bits === 8) return packed.subarray(0, w * h);
  const rowBytes = Math.ceil((w * bits) / 8);
  const out = new Uint8Array(w * h);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  for (let y = 0; y < h; y++) {
    const src = y * rowBytes;
    const dst = y * w;
    for (let x = 0; x < w; x++) {
      const shift = 8 - bits * ((x % perByte) + 1);
      out[dst + x] = (packed[src + Math.floor(x / perByte)]! >> shift) & mask;
    }
  }
  return out;
}
