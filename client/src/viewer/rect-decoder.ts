/**
 * Turns a wire frame into drawable rects. All rects of a frame decode concurrently:
 * images through createImageBitmap (decoded off the main thread), deflate codecs through
 * DecompressionStream; fills and copies need no decoding.
 */
import {
  Codec,
  FRAME_MAGIC,
  FrameFlags,
  readCopyPayload,
  type Frame,
  type FrameRect,
} from '@vdi/shared';
import type { InflateStream } from './inflate-stream';
import { PixelFormatError } from './pixel-format-error';
import { decodeDeflatePalette, decodeDeflateRgb } from './pixels';
import { VideoSkipped, type VideoDecoders } from './video-decoders';

interface Area {
  x: number;
  y: number;
  w: number;
  h: number;
}

export type DecodedRect =
  | (Area & { kind: 'fill'; color: string; opaque: boolean })
  | (Area & { kind: 'copy'; srcX: number; srcY: number })
  | (Area & { kind: 'image'; image: ImageBitmap })
  | (Area & { kind: 'pixels'; rgba: Uint8ClampedArray<ArrayBuffer> })
  /** a picture of a video region */
  | (Area & { kind: 'video'; frame: VideoFrame })
  /** a video picture not drawn because video stopped; the server repaints its region */
  | (Area & { kind: 'skipped' })
  /** a rect that could not be decoded: skipped, and the viewer asks for a repaint */
  | (Area & { kind: 'failed'; error: unknown });

export interface DecodedFrame {
  seq: number;
  fbWidth: number;
  fbHeight: number;
  flags: number;
  quality: number;
  rects: DecodedRect[];
}

const IMAGE_TYPES: Partial<Record<Codec, string>> = {
  [Codec.Png]: 'image/png',
  [Codec.Jpeg]: 'image/jpeg',
};

/**
 * Decode a frame's rects. Call it in frame arrival order: the zlib-coded rects take their
 * segments from `zlib` in order, and a keyframe starts the stream afresh.
 */
export async function decodeRects(
  frame: Frame,
  zlib: InflateStream,
  video?: VideoDecoders,
): Promise<DecodedFrame> {
  if (frame.flags & FrameFlags.Keyframe) {
    zlib.reset();
    video?.reset();
  }
  const rects = await Promise.all(frame.rects.map((r) => decodeRect(r, zlib, video)));
  return {
    seq: frame.seq,
    fbWidth: frame.fbWidth,
    fbHeight: frame.fbHeight,
    flags: frame.flags,
    quality: frame.quality,
    rects,
  };
}

async function decodeRect(
  rect: FrameRect,
  zlib: InflateStream,
  video: VideoDecoders | undefined,
): Promise<DecodedRect> {
  const area: Area = { x: rect.x, y: rect.y, w: rect.w, h: rect.h };
  try {
    switch (rect.codec) {
      case Codec.Fill: {
        const p = rect.payload;
        if (p.byteLength !== 4) throw new PixelFormatError('fill payload must be 4 bytes');
        const [r, g, b, a] = [p[0]!, p[1]!, p[2]!, p[3]!];
        return {
          ...area,
          kind: 'fill',
          color: `rgba(${r},${g},${b},${a / 255})`,
          opaque: a === 255,
        };
      }
      case Codec.Copy: {
        const { srcX, srcY } = readCopyPayload(rect);
        return { ...area, kind: 'copy', srcX, srcY };
      }
      case Codec.Png:
      case Codec.Jpeg: {
        const blob = new Blob([rect.payload as Uint8Array<ArrayBuffer>], {
          type: IMAGE_TYPES[rect.codec],
        });
        // colorSpaceConversion 'none': pixels land exactly as encoded (no gamma/ICC shifts)
        const image = await createImageBitmap(blob, {
          colorSpaceConversion: 'none',
          premultiplyAlpha: 'none',
        });
        return { ...area, kind: 'image', image };
      }
      case Codec.DeflateRgb:
        return {
          ...area,
          kind: 'pixels',
          rgba: await decodeDeflateRgb(rect.payload, rect.w, rect.h, zlib),
        };
      case Codec.DeflatePalette:
        return {
          ...area,
          kind: 'pixels',
          rgba: await decodeDeflatePalette(rect.payload, rect.w, rect.h, zlib),
        };
      case Codec.Video: {
        // decode() is called before the first await: chunks reach the decoder in frame order
        if (!video) throw new PixelFormatError('a video chunk, and this viewer asked for none');
        return { ...area, kind: 'video', frame: await video.decode(rect.payload) };
      }
      default:
        throw new PixelFormatError(`unknown codec ${String(rect.codec)}`);
    }
  } catch (error) {
    if (error instanceof VideoSkipped) return { ...area, kind: 'skipped' };
    return { ...area, kind: 'failed', error };
  }
}

/** Free the GPU/CPU memory of a frame's bitmaps. */
export function releaseFrame(frame: DecodedFrame): void {
  for (const r of frame.rects) {
    if (r.kind === 'image') r.image.close();
    else if (r.kind === 'video') r.frame.close();
  }
}

/**
 * The sequence number of a frame that failed to decode, if its header is readable: the
 * frame is still acknowledged so the server's flow control does not stall on it.
 */
export function peekSeq(data: Uint8Array): number | undefined {
  if (data.byteLength < 8 || data[0] !== FRAME_MAGIC) return undefined;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4, true);
}
