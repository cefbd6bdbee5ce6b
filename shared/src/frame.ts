/**
 * Binary frame layout: one Socket.IO binary message per frame (docs/architecture.md,
 * decision 7).
 *
 * All integers little-endian.
 *
 *   header (FRAME_HEADER_BYTES = 20)
 *     u8  magic      FRAME_MAGIC
 *     u8  version    FRAME_VERSION
 *     u16 rectCount
 *     u32 seq        per-viewer sequence number, echoed in the client's ack
 *     u16 fbWidth    framebuffer size this frame applies to (a change means "resize first")
 *     u16 fbHeight
 *     u32 sentAt     server clock in ms (low 32 bits), for round-trip statistics
 *     u8  flags      FrameFlags
 *     u8  quality    lossy quality the server is currently using (0 when none), for the stats overlay
 *     u16 reserved
 *   rect header × rectCount (RECT_HEADER_BYTES = 16)
 *     u16 x, u16 y, u16 w, u16 h
 *     u8  codec      Codec
 *     u8  reserved
 *     u16 reserved
 *     u32 length     payload bytes
 *   payloads, concatenated in rect order
 *
 * Rects are applied in order: a copy reads the canvas as left by the rects before it.
 *
 * The deflate data of DeflateRgb and DeflatePalette rects is one continuous raw-deflate
 * stream per viewer: each rect carries one segment that ended in a sync flush, with the flush's
 * final 00 00 FF FF left off (the receiver appends it). Segments are inflated in the order the
 * rects arrive, and both ends start a fresh stream at every Keyframe frame.
 */

export const FRAME_MAGIC = 0xf7;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 20;
export const RECT_HEADER_BYTES = 16;
/** Upper bound on rects in one frame; the server merges before it gets near this. */
export const MAX_RECTS_PER_FRAME = 4096;

export const Codec = {
  /** payload: 4 bytes R, G, B, A */
  Fill: 0,
  /** payload: u16 srcX, u16 srcY; copies w×h from (srcX, srcY) on the canvas */
  Copy: 1,
  /** payload: a PNG image of w×h */
  Png: 2,
  /** payload: a JPEG image of w×h */
  Jpeg: 3,
  // 4 is unassigned (decoders refuse it)
  /** payload: a segment of the viewer's deflate stream (see above) of w×h×3 bytes R, G, B */
  DeflateRgb: 5,
  /**
   * payload: u8 (paletteSize - 1), then a segment of the viewer's deflate stream holding
   * paletteSize × (R, G, B) followed by the w×h palette indices packed with packIndices
   * (1/2/4/8 bits each, rows byte-aligned)
   */
  DeflatePalette: 6,
  /**
   * payload: one chunk of a region's video stream (see videoPayload): u8 regionId, u8 flags
   * (VideoChunkFlags), u8 codecLength, the WebCodecs codec string (ASCII, e.g. avc1.42C01E),
   * then the encoded frame (H.264 in Annex-B, parameter sets in band on key chunks). w×h is
   * the video's coded picture, drawn at (x, y). Chunks of one region are decoded in order by
   * one decoder; a Keyframe frame ends every region (the next chunk of a region is a key).
   */
  Video: 7,
} as const;
export type Codec = (typeof Codec)[keyof typeof Codec];

export const FrameFlags = {
  /** this frame repaints the whole framebuffer (after attach, resize or resync) */
  Keyframe: 1,
  /** every rect in this frame is lossless (no lossy region left on screen after it) */
  Lossless: 2,
} as const;

export const VideoChunkFlags = {
  /** decodable on its own (an IDR picture with its parameter sets): a decoder may start here */
  Key: 1,
} as const;

/** Longest codec string a video chunk may carry (RFC 6381 strings are far shorter). */
export const MAX_VIDEO_CODEC_CHARS = 64;

export interface VideoChunk {
  /** which of the viewer's video regions (one decoder each) */
  regionId: number;
  key: boolean;
  /** WebCodecs codec string, e.g. avc1.42C01E */
  codec: string;
  /** the encoded picture */
  data: Uint8Array;
}

export interface FrameRect {
  x: number;
  y: number;
  w: number;
  h: number;
  codec: Codec;
  payload: Uint8Array;
}

export interface Frame {
  seq: number;
  fbWidth: number;
  fbHeight: number;
  sentAt: number;
  flags: number;
  quality: number;
  rects: FrameRect[];
}

export class FrameFormatError extends Error {
  readonly code = 'FRAME_FORMAT';
}

const CODEC_VALUES = new Set<number>(Object.values(Codec));

export function encodeFrame(frame: Frame): Uint8Array {
  if (frame.rects.length > MAX_RECTS_PER_FRAME) {
    throw new FrameFormatError(`too many rects: ${frame.rects.length}`);
  }
  let total = FRAME_HEADER_BYTES + RECT_HEADER_BYTES * frame.rects.length;
  for (const r of frame.rects) total += r.payload.byteLength;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, FRAME_MAGIC);
  dv.setUint8(1, FRAME_VERSION);
  dv.setUint16(2, frame.rects.length, true);
  dv.setUint32(4, frame.seq >>> 0, true);
  dv.setUint16(8, frame.fbWidth, true);
  dv.setUint16(10, frame.fbHeight, true);
  dv.setUint32(12, frame.sentAt >>> 0, true);
  dv.setUint8(16, frame.flags);
  dv.setUint8(17, frame.quality);
  let h = FRAME_HEADER_BYTES;
  let p = FRAME_HEADER_BYTES + RECT_HEADER_BYTES * frame.rects.length;
  for (const r of frame.rects) {
    dv.setUint16(h, r.x, true);
    dv.setUint16(h + 2, r.y, true);
    dv.setUint16(h + 4, r.w, true);
    dv.setUint16(h + 6, r.h, true);
    dv.setUint8(h + 8, r.codec);
    dv.setUint32(h + 12, r.payload.byteLength, true);
    out.set(r.payload, p);
    h += RECT_HEADER_BYTES;
    p += r.payload.byteLength;
  }
  return out;
}

/** Strict decoder: every length and bound is checked; payloads are views into `data`. */
export function decodeFrame(data: Uint8Array): Frame {
  if (data.byteLength < FRAME_HEADER_BYTES) throw new FrameFormatError('truncated header');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (dv.getUint8(0) !== FRAME_MAGIC) throw new FrameFormatError('bad magic');
  if (dv.getUint8(1) !== FRAME_VERSION) throw new FrameFormatError('unsupported version');
  const count = dv.getUint16(2, true);
  if (count > MAX_RECTS_PER_FRAME) throw new FrameFormatError('too many rects');
  const fbWidth = dv.getUint16(8, true);
  const fbHeight = dv.getUint16(10, true);
  const headersEnd = FRAME_HEADER_BYTES + count * RECT_HEADER_BYTES;
  if (data.byteLength < headersEnd) throw new FrameFormatError('truncated rect headers');
  const rects: FrameRect[] = [];
  let p = headersEnd;
  for (let i = 0; i < count; i++) {
    const h = FRAME_HEADER_BYTES + i * RECT_HEADER_BYTES;
    const x = dv.getUint16(h, true);
    const y = dv.getUint16(h + 2, true);
    const w = dv.getUint16(h + 4, true);
    const hh = dv.getUint16(h + 6, true);
    const codec = dv.getUint8(h + 8);
    const len = dv.getUint32(h + 12, true);
    if (!CODEC_VALUES.has(codec)) throw new FrameFormatError(`unknown codec ${codec}`);
    if (w === 0 || hh === 0 || x + w > fbWidth || y + hh > fbHeight) {
      throw new FrameFormatError(`rect ${i} out of bounds`);
    }
    if (p + len > data.byteLength) throw new FrameFormatError(`rect ${i} payload truncated`);
    rects.push({ x, y, w, h: hh, codec: codec as Codec, payload: data.subarray(p, p + len) });
    p += len;
  }
  if (p !== data.byteLength) throw new FrameFormatError('trailing bytes');
  return {
    seq: dv.getUint32(4, true),
    fbWidth,
    fbHeight,
    sentAt: dv.getUint32(12, true),
    flags: dv.getUint8(16),
    quality: dv.getUint8(17),
    rects,
  };
}

export function fillPayload(r: number, g: number, b: number, a = 255): Uint8Array {
  return Uint8Array.of(r, g, b, a);
}

export function copyPayload(srcX: number, srcY: number): Uint8Array {
  const out = new Uint8Array(4);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, srcX, true);
  dv.setUint16(2, srcY, true);
  return out;
}

export function readCopyPayload(payload: Uint8Array): { srcX: number; srcY: number } {
  if (payload.byteLength !== 4) throw new FrameFormatError('copy payload must be 4 bytes');
  const dv = new DataView(payload.buffer, payload.byteOffset, 4);
  return { srcX: dv.getUint16(0, true), srcY: dv.getUint16(2, true) };
}

export function videoPayload(c: VideoChunk): Uint8Array {
  if (!/^[\x21-\x7e]+$/.test(c.codec) || c.codec.length > MAX_VIDEO_CODEC_CHARS) {
    throw new FrameFormatError(`bad video codec string ${JSON.stringify(c.codec)}`);
  }
  if (!Number.isInteger(c.regionId) || c.regionId < 0 || c.regionId > 255) {
    throw new FrameFormatError(`bad video region id ${c.regionId}`);
  }
  const out = new Uint8Array(3 + c.codec.length + c.data.byteLength);
  out[0] = c.regionId;
  out[1] = c.key ? VideoChunkFlags.Key : 0;
  out[2] = c.codec.length;
  for (let i = 0; i < c.codec.length; i++) out[3 + i] = c.codec.charCodeAt(i);
  out.set(c.data, 3 + c.codec.length);
  return out;
}

/** Strict: a bad codec string, unknown flags or an empty picture are errors. `data` is a view. */
export function readVideoPayload(payload: Uint8Array): VideoChunk {
  if (payload.byteLength < 3) throw new FrameFormatError('video payload truncated');
  const flags = payload[1]!;
  if ((flags & ~VideoChunkFlags.Key) !== 0)
    throw new FrameFormatError(`unknown video flags ${flags}`);
  const n = payload[2]!;
  if (n === 0 || n > MAX_VIDEO_CODEC_CHARS) throw new FrameFormatError('bad video codec length');
  if (payload.byteLength <= 3 + n) throw new FrameFormatError('video payload has no picture');
  let codec = '';
  for (let i = 0; i < n; i++) {
    const ch = payload[3 + i]!;
    if (ch < 0x21 || ch > 0x7e) throw new FrameFormatError('video codec string is not ASCII');
    codec += String.fromCharCode(ch);
  }
  return {
    regionId: payload[0]!,
    key: (flags & VideoChunkFlags.Key) !== 0,
    codec,
    data: payload.subarray(3 + n),
  };
}
