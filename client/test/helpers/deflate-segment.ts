/**
 * One segment of a zlib stream as the server sends it: here a stored (uncompressed)
 * non-final deflate block, which is valid deflate; the receiver appends 00 00 FF FF.
 */
export function segment(data: Uint8Array): Uint8Array {
  const n = data.byteLength;
  // the trailing 0x00 is the header of the empty stored block a sync flush ends with; its
  // LEN/NLEN (00 00 FF FF) are the four bytes the server leaves off and the viewer appends
  return Uint8Array.of(0x00, n & 0xff, n >> 8, ~n & 0xff, (~n >> 8) & 0xff, ...data, 0x00);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
