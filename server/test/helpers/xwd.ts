/**
 * The desktop's own framebuffer from `xwd -root` (X11/XWDFile.h): what Xvnc at depth 24
 * writes, ZPixmap at 32 bits per pixel with 8-bit colour masks, either byte order. The
 * bench has the same reader for its runs (bench/xwd.mjs).
 */
export function parseXwd(buf: Buffer): { width: number; height: number; rgba: Buffer } {
  const f = (i: number) => buf.readUInt32BE(i * 4); // the header is big-endian
  const headerSize = f(0);
  const [format, width, height, byteOrder, bpp, bytesPerLine] = [
    f(2),
    f(4),
    f(5),
    f(7),
    f(11),
    f(12),
  ];
  if (format !== 2 || bpp !== 32) throw new Error(`xwd: format ${format} at ${bpp} bpp`);
  const shift = (mask: number) => {
    let s = 0;
    while (s < 32 && ((mask >>> s) & 1) === 0) s++;
    return s;
  };
  const [rs, gs, bs] = [shift(f(14)), shift(f(15)), shift(f(16))];
  const start = headerSize + f(19) * 12; // then the colour map, 12 bytes an entry
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
