/**
 * A desktop's own framebuffer for tests: `xwd -root` parsed (ZPixmap, 32 bits per pixel,
 * 8-bit colour masks, either byte order: what Xvnc at depth 24 writes). The bench has the
 * same reader for its quality check (server/bench/xwd.mjs).
 */
export interface RgbImage {
  width: number;
  height: number;
  /** RGBA, alpha 255 */
  rgba: Buffer;
}

export function parseXwd(buf: Buffer): RgbImage {
  const f = (i: number) => buf.readUInt32BE(i * 4); // the header is big-endian
  if (buf.length < 100) throw new Error('xwd: shorter than its header');
  const headerSize = f(0);
  const [version, format, width, height, byteOrder, bpp, bytesPerLine] = [
    f(1),
    f(2),
    f(4),
    f(5),
    f(7),
    f(11),
    f(12),
  ];
  if (version !== 7 || format !== 2 || bpp !== 32)
    throw new Error(`xwd: version ${version} format ${format} at ${bpp} bpp is not read here`);
  const shift = (mask: number) => {
    let s = 0;
    while (s < 32 && ((mask >>> s) & 1) === 0) s++;
    if (mask >>> s !== 0xff) throw new Error(`xwd: colour mask 0x${mask.toString(16)}`);
    return s;
  };
  const [rs, gs, bs] = [shift(f(14)), shift(f(15)), shift(f(16))];
  const start = headerSize + f(19) * 12; // colour map entries follow the header
  if (buf.length < start + bytesPerLine * height) throw new Error('xwd: truncated');
  const rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = start + y * bytesPerLine + x * 4;
      const p = byteOrder === 0 ? buf.readUInt32LE(o) : buf.readUInt32BE(o);
      const d = (y * width + x) * 4;
      rgba[d] = (p >>> rs) & 0xff;
      rgba[d + 1] = (p >>> gs) & 0xff;
      rgba[d + 2] = (p >>> bs) & 0xff;
      rgba[d + 3] = 255;
    }
  return { width, height, rgba };
}
