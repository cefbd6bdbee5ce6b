/**
 * Builders for server-to-client RFB bytes, written from the spec, so tests can say what
 * a server sends rather than spell bytes.
 */

export const u8 = (v: number): Buffer => Buffer.from([v & 0xff]);
export const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v & 0xffff);
  return b;
};
export const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
export const s32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v | 0);
  return b;
};
export const pad = (n: number): Buffer => Buffer.alloc(n);
export const cat = (...parts: Uint8Array[]): Buffer => Buffer.concat(parts);

export const version = (v = '003.008'): Buffer => Buffer.from(`RFB ${v}\n`, 'latin1');

/** 3.7+: the list of security types */
export const securityTypes = (...types: number[]): Buffer =>
  cat(u8(types.length), Buffer.from(types));
/** 3.7+: zero types then a reason */
export const securityRefused = (reason: string): Buffer => cat(u8(0), reasonString(reason));
export const reasonString = (reason: string): Buffer => {
  const text = Buffer.from(reason, 'latin1');
  return cat(u32(text.length), text);
};
export const securityResult = (status: number): Buffer => u32(status);

/** ServerInit with a typical 32 bpp server pixel format */
export const serverInit = (width: number, height: number, name = 'test desktop'): Buffer => {
  const nameBytes = Buffer.from(name, 'utf8');
  const pf = Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
  return cat(u16(width), u16(height), pf, u32(nameBytes.length), nameBytes);
};

export interface WireRect {
  x: number;
  y: number;
  w: number;
  h: number;
  encoding: number;
  body: Buffer;
}

export const rectHeader = (x: number, y: number, w: number, h: number, encoding: number): Buffer =>
  cat(u16(x), u16(y), u16(w), u16(h), s32(encoding));

/** FramebufferUpdate with the given rectangles; `count` overrides the rectangle count */
export const update = (rects: WireRect[], count = rects.length): Buffer =>
  cat(
    u8(0),
    pad(1),
    u16(count),
    ...rects.map((r) => cat(rectHeader(r.x, r.y, r.w, r.h, r.encoding), r.body)),
  );

export const raw = (x: number, y: number, w: number, h: number, pixels: Buffer): WireRect => {
  if (pixels.length !== w * h * 4) throw new Error('raw(): pixels must be w*h*4 bytes');
  return { x, y, w, h, encoding: 0, body: pixels };
};

/** w×h pixels of one colour, bytes R, G, B, X */
export const solid = (w: number, h: number, r: number, g: number, b: number): Buffer => {
  const out = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) out.set([r, g, b, 0], i * 4);
  return out;
};

export const copyRect = (
  x: number,
  y: number,
  w: number,
  h: number,
  srcX: number,
  srcY: number,
): WireRect => ({
  x,
  y,
  w,
  h,
  encoding: 1,
  body: cat(u16(srcX), u16(srcY)),
});

export const desktopSize = (w: number, h: number): WireRect => ({
  x: 0,
  y: 0,
  w,
  h,
  encoding: -223,
  body: pad(0),
});

export const lastRect = (): WireRect => ({ x: 0, y: 0, w: 0, h: 0, encoding: -224, body: pad(0) });

export interface WireScreen {
  id: number;
  x: number;
  y: number;
  w: number;
  h: number;
  flags?: number;
}

export const extendedDesktopSize = (
  reason: number,
  status: number,
  w: number,
  h: number,
  screens: WireScreen[] = [{ id: 0, x: 0, y: 0, w, h }],
  count = screens.length,
): WireRect => ({
  x: reason,
  y: status,
  w,
  h,
  encoding: -308,
  body: cat(
    u8(count),
    pad(3),
    ...screens.map((s) =>
      cat(u32(s.id), u16(s.x), u16(s.y), u16(s.w), u16(s.h), u32(s.flags ?? 0)),
    ),
  ),
});

/** Cursor pseudo-rect: pixels R,G,B,X plus a mask (ceil(w/8) bytes a row, MSB leftmost) */
export const cursor = (
  hotX: number,
  hotY: number,
  w: number,
  h: number,
  pixels: Buffer,
  mask: Buffer,
): WireRect => ({
  x: hotX,
  y: hotY,
  w,
  h,
  encoding: -239,
  body: cat(pixels, mask),
});

export const bell = (): Buffer => u8(2);
export const serverCutText = (text: string | Buffer): Buffer => {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  return cat(u8(3), pad(3), u32(bytes.length), bytes);
};
export const endOfContinuousUpdates = (): Buffer => u8(150);
export const serverFence = (flags: number, payload: Buffer = pad(0)): Buffer =>
  cat(u8(248), pad(3), u32(flags), u8(payload.length), payload);

/** Split `bytes` at the given offsets (sorted, within range). */
export function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}
