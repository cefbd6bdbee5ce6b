import { Codec, FrameFlags, copyPayload, encodeFrame, type FrameRect } from '@vdi/shared';
import type { CopyOp } from './dirty-grid.js';
import type { EncodedRect } from './encode.js';

/** A planned and encoded frame, ready to be laid out. */
export interface FrameContent {
  seq: number;
  fbWidth: number;
  fbHeight: number;
  /** server clock, ms */
  sentAt: number;
  /** repaints the whole framebuffer; the client restarts its inflater */
  keyframe: boolean;
  copies: CopyOp[];
  rects: EncodedRect[];
  /** the lossy quality the rects marked lossy were encoded at */
  quality: number;
  /** after this frame no region of the client's canvas is lossy any more */
  lossless: boolean;
}

/** Lay out one frame as its binary message (shared/src/frame.ts): copies first, then pixels. */
export function writeFrame(c: FrameContent): Uint8Array {
  const rects: FrameRect[] = c.copies.map((op) => ({
    x: op.x,
    y: op.y,
    w: op.w,
    h: op.h,
    codec: Codec.Copy,
    payload: copyPayload(op, op.srcX, op.srcY),
  }));
  let anyLossy = false;
  for (const r of c.rects) {
    rects.push(r);
    anyLossy ||= r.lossy;
  }
  return encodeFrame({
    seq: c.seq,
    fbWidth: c.fbWidth,
    fbHeight: c.fbHeight,
    sentAt: c.sentAt,
    flags: (c.keyframe ? FrameFlags.Keyframe : 0) | (c.lossless ? FrameFlags.Lossless : 0),
    quality: anyLossy ? c.quality : 0,
    rects,
  });
}
