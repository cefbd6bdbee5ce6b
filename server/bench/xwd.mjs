// A tiny XWD (X Window Dump, `xwd -root`) reader: the desktop's own framebuffer, as the
// reference picture the viewers' canvases are compared with. Handles what Xvnc at depth 24
// produces: ZPixmap, 32 bits per pixel, true colour with 8-bit masks, either byte order.

const HEADER_FIELDS = 25; // CARD32 fields of XWDFileHeader (X11/XWDFile.h)
const XWD_FILE_VERSION = 7;
const ZPIXMAP = 2;
const XWD_COLOR_BYTES = 12; // sizeof(XWDColor)

/**
 * @param {Buffer} buf the output of `xwd -root`
 * @returns {{ width: number, height: number, rgba: Buffer }} RGBA, alpha 255
 */
export function parseXwd(buf) {
  if (buf.length < HEADER_FIELDS * 4)
    throw new Error(`xwd: ${buf.length} bytes is shorter than its header`);
  const f = (i) => buf.readUInt32BE(i * 4); // the header is always big-endian
  const [headerSize, version, format, , width, height, , byteOrder, , , , bpp, bytesPerLine] =
    Array.from({ length: 13 }, (_, i) => f(i));
  const redMask = f(14);
  const greenMask = f(15);
  const blueMask = f(16);
  const ncolors = f(19);
  if (version !== XWD_FILE_VERSION)
    throw new Error(`xwd: file version ${version}, expected ${XWD_FILE_VERSION}`);
  if (format !== ZPIXMAP || bpp !== 32)
    throw new Error(`xwd: format ${format} at ${bpp} bpp; only ZPixmap at 32 bpp is read`);
  const dataStart = headerSize + ncolors * XWD_COLOR_BYTES;
  if (buf.length < dataStart + bytesPerLine * height)
    throw new Error('xwd: pixel data is truncated');
  const shift = (mask) => {
    if (mask === 0) throw new Error('xwd: zero colour mask');
    let s = 0;
    while (((mask >>> s) & 1) === 0) s++;
    if (mask >>> s !== 0xff)
      throw new Error(`xwd: colour mask 0x${mask.toString(16)} is not 8 bits`);
    return s;
  };
  const rs = shift(redMask);
  const gs = shift(greenMask);
  const bs = shift(blueMask);
  const rgba = Buffer.alloc(width * height * 4);
  const lsbFirst = byteOrder === 0;
  for (let y = 0; y < height; y++) {
    let src = dataStart + y * bytesPerLine;
    let dst = y * width * 4;
    for (let x = 0; x < width; x++, src += 4, dst += 4) {
      const p = lsbFirst ? buf.readUInt32LE(src) : buf.readUInt32BE(src);
      rgba[dst] = (p >>> rs) & 0xff;
      rgba[dst + 1] = (p >>> gs) & 0xff;
      rgba[dst + 2] = (p >>> bs) & 0xff;
      rgba[dst + 3] = 255;
    }
  }
  return { width, height, rgba };
}
