/**
 * Binary frame layout: one Socket.IO binary message per frame (docs/architecture.md,
 * decision 7).
 *
 * Fixed integers are little-endian; "varint" is an unsigned LEB128 of at most 5 bytes (value
 * below 2^32, no overlong encodings), "zigzag" a signed value mapped onto one (0, -1, 1, -2, …
 * → 0, 1, 2, 3, …).
 *
 *   header
 *     u8  magic      FRAME_MAGIC
 *     u8  version    FRAME_VERSION
 *     u8  flags      FrameFlags
 *     u8  quality    lossy quality the server is currently using (0 when none), for the stats overlay
 *     u32 seq        per-viewer sequence number, echoed in the client's ack (always at byte 4)
 *     u32 sentAt     server clock in ms (low 32 bits), for round-trip statistics
 *     varint fbWidth, varint fbHeight   framebuffer size this frame applies to (a change means
 *                                       "resize first"); at most MAX_FRAMEBUFFER_SIDE
 *     varint rectCount
 *   rect header × rectCount
 *     u8     codec    Codec
 *     zigzag x − the previous rect's x (0 for the first rect)
 *     zigzag y − the previous rect's y
 *     varint w, varint h
 *     varint length   payload bytes
 *   payloads, concatenated in rect order
 *
 * A rect header takes 6 bytes for a small rect near the one before it and rarely more than
 * 11 (version 1 had 16: fixed u16 fields and reserved bytes, and a 20-byte frame header).
 * Frames of typing, scrolling and window drags are a few small rects each, so the headers
 * were over a third of their bytes.
 *
 * Rects are applied in order: a copy reads the canvas as left by the rects before it.
 *
 * The deflate data of DeflateRgb and DeflatePalette rects is one continuous raw-deflate
 * stream per viewer: each rect carries one segment that ended in a sync flush, with the flush's
 * final 00 00 FF FF left off (the receiver appends it). Segments are inflated in the order the
 * rects arrive, and both ends start a fresh stream at every Keyframe frame.
 */

export const FRAME_MAGIC = 0xf7;
export const FRAME_VERSION = 2;
/** the header's fixed part; the varints follow it */
export const FRAME_FIXED_HEADER_BYTES = 12;
/** Upper bound on rects in one frame; the server merges before it gets near this. */
export const MAX_RECTS_PER_FRAME = 4096;
/** Largest framebuffer width or height a frame may carry (RFB's own limit: u16). */
export const MAX_FRAMEBUFFER_SIDE = 65535;
/** the longest rect header: codec, then five varints of up to 5 bytes */
const MAX_RECT_HEADER_BYTES = 26;
const MAX_VARINT_BYTES = 5;

export const Codec = {
  /** payload: 4 bytes R, G, B, A */
  Fill: 0,
  /**
   * payload: zigzag srcX − x, zigzag srcY − y (copyPayload); copies w×h from (srcX, srcY) on
   * the canvas. A moved window or a scroll moves by a few pixels: two or three bytes.
   */
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

/**
 * A frame of another layout version: the page was loaded from an older or newer server than
 * the one now sending (an upgrade while it was open). No later frame will decode either.
 */
export class FrameVersionError extends FrameFormatError {
  constructor(readonly version: number) {
    super(`unsupported frame version ${version} (this page reads version ${FRAME_VERSION})`);
  }
}

const CODEC_VALUES = new Set<number>(Object.values(Codec));

function writeVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

const zigzag = (d: number): number => (d >= 0 ? d * 2 : -d * 2 - 1);
const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

function checkSide(what: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min || v > MAX_FRAMEBUFFER_SIDE) {
    throw new FrameFormatError(`${what} out of range: ${v}`);
  }
}

/** Reused space for a frame's headers while they are laid out (the frame is then sized exactly). */
let headerScratch = new Uint8Array(
  FRAME_FIXED_HEADER_BYTES + 3 * MAX_VARINT_BYTES + 64 * MAX_RECT_HEADER_BYTES,
);

export function encodeFrame(frame: Frame): Uint8Array {
  const count = frame.rects.length;
  if (count > MAX_RECTS_PER_FRAME) throw new FrameFormatError(`too many rects: ${count}`);
  checkSide('framebuffer width', frame.fbWidth, 0);
  checkSide('framebuffer height', frame.fbHeight, 0);
  const most = FRAME_FIXED_HEADER_BYTES + 3 * MAX_VARINT_BYTES + count * MAX_RECT_HEADER_BYTES;
  if (headerScratch.byteLength < most) headerScratch = new Uint8Array(most);
  const head = headerScratch;
  const dv = new DataView(head.buffer);
  head[0] = FRAME_MAGIC;
  head[1] = FRAME_VERSION;
  head[2] = frame.flags;
  head[3] = frame.quality;
  dv.setUint32(4, frame.seq >>> 0, true);
  dv.setUint32(8, frame.sentAt >>> 0, true);
  let h = writeVarint(head, FRAME_FIXED_HEADER_BYTES, frame.fbWidth);
  h = writeVarint(head, h, frame.fbHeight);
  h = writeVarint(head, h, count);
  let payloadBytes = 0;
  let px = 0;
  let py = 0;
  for (const r of frame.rects) {
    checkSide('rect x', r.x, 0);
    checkSide('rect y', r.y, 0);
    checkSide('rect width', r.w, 1);
    checkSide('rect height', r.h, 1);
    head[h++] = r.codec;
    h = writeVarint(head, h, zigzag(r.x - px));
    h = writeVarint(head, h, zigzag(r.y - py));
    h = writeVarint(head, h, r.w);
    h = writeVarint(head, h, r.h);
    h = writeVarint(head, h, r.payload.byteLength);
    payloadBytes += r.payload.byteLength;
    px = r.x;
    py = r.y;
  }
  const out = new Uint8Array(h + payloadBytes);
  out.set(head.subarray(0, h), 0);
  let p = h;
  for (const r of frame.rects) {
    out.set(r.payload, p);
    p += r.payload.byteLength;
  }
  return out;
}

/** Reads varints from a frame, refusing truncated, overlong and too large ones. */
class VarintReader {
  constructor(
    private readonly data: Uint8Array,
    public at: number,
  ) {}

  read(what: string): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (this.at >= this.data.byteLength) throw new FrameFormatError(`truncated ${what}`);
      const b = this.data[this.at++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (b === 0 && i > 0) throw new FrameFormatError(`overlong ${what}`);
        if (v > 0xffffffff) throw new FrameFormatError(`${what} too large`);
        return v;
      }
      scale *= 128;
    }
    throw new FrameFormatError(`${what} too long`);
  }

  byte(what: string): number {
    if (this.at >= this.data.byteLength) throw new FrameFormatError(`truncated ${what}`);
    return this.data[this.at++]!;
  }
}

/** Strict decoder: every length and bound is checked; payloads are views into `data`. */
export function decodeFrame(data: Uint8Array): Frame {
  if (data.byteLength < FRAME_FIXED_HEADER_BYTES) throw new FrameFormatError('truncated header');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data[0] !== FRAME_MAGIC) throw new FrameFormatError('bad magic');
  if (data[1] !== FRAME_VERSION) throw new FrameVersionError(data[1]!);
  const in_ = new VarintReader(data, FRAME_FIXED_HEADER_BYTES);
  const fbWidth = in_.read('header');
  const fbHeight = in_.read('header');
  if (fbWidth > MAX_FRAMEBUFFER_SIDE || fbHeight > MAX_FRAMEBUFFER_SIDE) {
    throw new FrameFormatError('framebuffer too large');
  }
  const count = in_.read('header');
  if (count > MAX_RECTS_PER_FRAME) throw new FrameFormatError('too many rects');
  // headers first (their end is where the payloads start), then each rect's payload view
  const rects: FrameRect[] = [];
  const lengths: number[] = [];
  let x = 0;
  let y = 0;
  let payloadBytes = 0;
  for (let i = 0; i < count; i++) {
    const codec = in_.byte('rect headers');
    x += unzigzag(in_.read('rect headers'));
    y += unzigzag(in_.read('rect headers'));
    const w = in_.read('rect headers');
    const h = in_.read('rect headers');
    const len = in_.read('rect headers');
    if (!CODEC_VALUES.has(codec)) throw new FrameFormatError(`unknown codec ${codec}`);
    if (x < 0 || y < 0 || w === 0 || h === 0 || x + w > fbWidth || y + h > fbHeight) {
      throw new FrameFormatError(`rect ${i} out of bounds`);
    }
    payloadBytes += len;
    lengths.push(len);
    rects.push({ x, y, w, h, codec: codec as Codec, payload: data.subarray(0, 0) });
  }
  let p = in_.at;
  if (p + payloadBytes < data.byteLength) throw new FrameFormatError('trailing bytes');
  for (let i = 0; i < count; i++) {
    const len = lengths[i]!;
    if (p + len > data.byteLength) throw new FrameFormatError(`rect ${i} payload truncated`);
    rects[i]!.payload = data.subarray(p, p + len);
    p += len;
  }
  return {
    seq: dv.getUint32(4, true),
    fbWidth,
    fbHeight,
    sentAt: dv.getUint32(8, true),
    flags: data[2]!,
    quality: data[3]!,
    rects,
  };
}

export function fillPayload(r: number, g: number, b: number, a = 255): Uint8Array {
  return Uint8Array.of(r, g, b, a);
}

/** The payload of a Copy rect at (to.x, to.y) that copies from (srcX, srcY). */
export function copyPayload(to: { x: number; y: number }, srcX: number, srcY: number): Uint8Array {
  checkSide('copy source x', srcX, 0);
  checkSide('copy source y', srcY, 0);
  const out = new Uint8Array(2 * MAX_VARINT_BYTES);
  const n = writeVarint(out, writeVarint(out, 0, zigzag(srcX - to.x)), zigzag(srcY - to.y));
  return out.subarray(0, n);
}

/** Where a Copy rect copies from; strict: two varints, nothing after them, a source on 0..65535. */
export function readCopyPayload(rect: { x: number; y: number; payload: Uint8Array }): {
  srcX: number;
  srcY: number;
} {
  const in_ = new VarintReader(rect.payload, 0);
  const srcX = rect.x + unzigzag(in_.read('copy payload'));
  const srcY = rect.y + unzigzag(in_.read('copy payload'));
  if (in_.at !== rect.payload.byteLength) throw new FrameFormatError('copy payload too long');
  if (srcX < 0 || srcY < 0 || srcX > MAX_FRAMEBUFFER_SIDE || srcY > MAX_FRAMEBUFFER_SIDE) {
    throw new FrameFormatError('copy source out of range');
  }
  return { srcX, srcY };
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
