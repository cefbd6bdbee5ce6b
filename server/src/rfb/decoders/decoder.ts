import type { ByteQueue } from '../byte-queue.js';
import type { RfbLimits, FramebufferSink } from '../types.js';
import type { RectHeader } from '../rect.js';
import type { ExtendedDesktopSizeEvent } from '../framebuffer-size.js';
import type { InflateStream } from './inflate.js';

/** The zlib streams of one connection: they live as long as it does, across rectangles. */
export interface CodecStreams {
  readonly zrle: InflateStream;
  readonly tight: readonly InflateStream[];
}

/** What a rectangle decoder may see and change while it decodes. */
export interface DecodeContext {
  readonly sink: FramebufferSink;
  readonly limits: RfbLimits;
  readonly codecs: CodecStreams;
  /** current framebuffer size, pixels; changes mid-update after a (Extended)DesktopSize */
  readonly width: number;
  readonly height: number;
  /** apply a new framebuffer size (calls sink.resize when it differs) */
  resize(width: number, height: number): void;
  /** report an ExtendedDesktopSize rectangle to the connection */
  extendedDesktopSize(event: ExtendedDesktopSizeEvent): void;
}

/**
 * Decodes the body of one rectangle. It keeps its own progress between calls, so a
 * body that arrives in pieces decodes the same as one that arrives whole.
 */
export interface RectDecoder {
  /** Consume what is available; true once the rectangle is complete, false to wait. */
  decode(queue: ByteQueue, ctx: DecodeContext): boolean;
}

/**
 * Makes the decoder for one rectangle, after validating its header against the limits
 * and the current framebuffer (throws RfbProtocolError).
 */
export type RectDecoderFactory = (rect: RectHeader, ctx: DecodeContext) => RectDecoder;

/** A decoder for a rectangle with no body. */
export const EMPTY_BODY: RectDecoder = { decode: () => true };
