/**
 * Server-to-client messages after ServerInit: a strict, resumable state machine. Feed it
 * bytes in any split; it decodes what is complete, keeps its place, and waits for more.
 * Anything outside the protocol or our limits throws an RfbProtocolError, after which
 * the parser stays failed.
 */
import { ByteQueue } from './byte-queue.js';
import { Encoding, MAX_FENCE_PAYLOAD, ServerMessageType } from './constants.js';
import { copyRectDecoder } from './decoders/copy-rect.js';
import { cursorDecoder } from './decoders/cursor.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoders/decoder.js';
import { desktopSizeDecoder } from './decoders/desktop-size.js';
import { extendedDesktopSizeDecoder } from './decoders/extended-desktop-size.js';
import { InflateStream } from './decoders/inflate.js';
import { rawDecoder } from './decoders/raw.js';
import { TIGHT_STREAMS, tightDecoder } from './decoders/tight.js';
import { zrleDecoder } from './decoders/zrle.js';
import { RfbProtocolError } from './errors.js';
import type { ExtendedDesktopSizeEvent } from './framebuffer-size.js';
import { RECT_HEADER_LENGTH } from './rect.js';
import { DEFAULT_RFB_LIMITS, type FramebufferSink, type RfbLimits } from './types.js';

/**
 * The rectangle encodings we decode. LastRect is handled by the parser. The compressed ones
 * (OPTIONAL_ENCODINGS) are accepted only when the client asked for them.
 */
const DECODERS: ReadonlyMap<number, RectDecoderFactory> = new Map<number, RectDecoderFactory>([
  [Encoding.Raw, rawDecoder],
  [Encoding.CopyRect, copyRectDecoder],
  [Encoding.ZRLE, zrleDecoder],
  [Encoding.Tight, tightDecoder],
  [Encoding.DesktopSize, desktopSizeDecoder],
  [Encoding.ExtendedDesktopSize, extendedDesktopSizeDecoder],
  [Encoding.Cursor, cursorDecoder],
]);

/** Encodings accepted only when listed in the parser's `encodings` option. */
const OPTIONAL_ENCODINGS: ReadonlySet<number> = new Set<number>([Encoding.ZRLE, Encoding.Tight]);

/** Encodings whose rectangles carry framebuffer pixels (the rest are pseudo-encodings). */
const PIXEL_ENCODINGS: ReadonlySet<number> = new Set<number>([
  Encoding.Raw,
  Encoding.CopyRect,
  Encoding.ZRLE,
  Encoding.Tight,
]);

/** Fixed header lengths, bytes, message-type byte included. */
const UPDATE_HEADER_LENGTH = 4; // type, padding, U16 number-of-rectangles
const CUT_TEXT_HEADER_LENGTH = 8; // type, 3 padding, U32 length
/** Extended Clipboard messages may exceed the text limit by this much (flags, zlib), bytes. */
const EXT_CLIPBOARD_MARGIN = 4096;
const FENCE_HEADER_LENGTH = 9; // type, 3 padding, U32 flags, U8 length

/** What the connection hears about, beyond the pixels that go to the sink. */
export interface ServerMessageEvents {
  /**
   * a whole FramebufferUpdate has been applied (after sink.updateEnd); `pixels` tells
   * whether it carried framebuffer data (Raw, CopyRect, ZRLE, Tight) or only pseudo-rectangles
   */
  updateEnd?(pixels: boolean): void;
  /** the framebuffer size changed (after sink.resize) */
  resized?(width: number, height: number): void;
  extendedDesktopSize?(event: ExtendedDesktopSizeEvent): void;
  endOfContinuousUpdates?(): void;
  /** ServerFence; `payload` is a copy */
  fence?(flags: number, payload: Buffer): void;
  /** an Extended Clipboard message (negative-length ServerCutText): its payload, a copy */
  extendedClipboard?(payload: Buffer): void;
}

export interface ServerMessageParserOptions {
  sink: FramebufferSink;
  /** framebuffer size from ServerInit */
  width: number;
  height: number;
  limits?: RfbLimits;
  events?: ServerMessageEvents;
  /** share a queue with the handshake so bytes after ServerInit carry over */
  queue?: ByteQueue;
  /**
   * Asked before each new message: true makes parse() stop there and leave the rest in the
   * queue (the connection is backed up and must not answer more messages yet).
   */
  holdBack?: () => boolean;
  /**
   * The optional encodings (ZRLE, Tight) the client asked for; a rectangle in any other
   * optional encoding is a protocol error.
   * @default none
   */
  encodings?: readonly number[];
  /**
   * The client asked for the Extended Clipboard pseudo-encoding: a ServerCutText with a
   * negative length is one of its messages (else a length that large is only too long).
   */
  extendedClipboard?: boolean;
}

/**
 * Where parse() stopped: everything consumed ('idle'), inside a message that needs more
 * bytes ('partial'), or before a message because holdBack said so ('held').
 */
export type ParseStop = 'idle' | 'partial' | 'held';

type ParserState =
  | { kind: 'message' }
  | { kind: 'rect-header'; rectsLeft: number }
  | { kind: 'rect-body'; rectsLeft: number; encoding: number; decoder: RectDecoder }
  | { kind: 'cut-text'; length: number }
  | { kind: 'ext-cut-text'; length: number }
  | { kind: 'skip-cut-text'; left: number }
  | { kind: 'failed'; error: RfbProtocolError | Error };

export class ServerMessageParser {
  readonly queue: ByteQueue;
  private state: ParserState = { kind: 'message' };
  /** current framebuffer size, pixels */
  private readonly fb: { width: number; height: number };
  private readonly sink: FramebufferSink;
  private readonly limits: RfbLimits;
  private readonly events: ServerMessageEvents;
  private readonly extendedClipboard: boolean;
  private readonly ctx: DecodeContext;
  private readonly holdBack: () => boolean;
  private readonly accepted: ReadonlySet<number>;
  /** the current update has had a rectangle with pixels (PIXEL_ENCODINGS) */
  private updateHasPixels = false;
  /** the last step() stopped because holdBack() said so */
  private held = false;
  private completed = 0;

  constructor(options: ServerMessageParserOptions) {
    this.queue = options.queue ?? new ByteQueue();
    this.sink = options.sink;
    this.limits = options.limits ?? DEFAULT_RFB_LIMITS;
    this.events = options.events ?? {};
    this.extendedClipboard = options.extendedClipboard ?? false;
    this.holdBack = options.holdBack ?? (() => false);
    this.accepted = new Set(options.encodings ?? []);
    const fb = { width: options.width, height: options.height };
    this.fb = fb;
    this.ctx = {
      sink: this.sink,
      limits: this.limits,
      codecs: {
        zrle: new InflateStream('ZRLE'),
        tight: Array.from(
          { length: TIGHT_STREAMS },
          (_, i) => new InflateStream(`Tight stream ${i}`),
        ),
      },
      get width() {
        return fb.width;
      },
      get height() {
        return fb.height;
      },
      resize: (w, h) => this.resize(w, h),
      extendedDesktopSize: (ev) => this.events.extendedDesktopSize?.(ev),
    };
  }

  get width(): number {
    return this.fb.width;
  }

  get height(): number {
    return this.fb.height;
  }

  /** server messages completed so far (a whole FramebufferUpdate counts once) */
  get messagesCompleted(): number {
    return this.completed;
  }

  /** true while a FramebufferUpdate has started but not ended */
  get inUpdate(): boolean {
    return this.state.kind === 'rect-header' || this.state.kind === 'rect-body';
  }

  /** Append bytes and decode what they complete. */
  push(chunk: Uint8Array): ParseStop {
    this.queue.push(chunk);
    return this.parse();
  }

  /**
   * Decode everything complete in the queue, and tell where it stopped. Throws
   * RfbProtocolError on bad input, and rethrows whatever the sink or an event handler
   * throws; either way the parser is then failed and every later call throws the same error.
   */
  parse(): ParseStop {
    if (this.state.kind === 'failed') throw this.state.error;
    try {
      this.held = false;
      while (this.step()) {
        // each step consumed something; go on until one has to wait
      }
      this.sink.idle?.();
    } catch (err) {
      this.state = { kind: 'failed', error: err instanceof Error ? err : new Error(String(err)) };
      throw err;
    }
    if (this.held) return 'held';
    return this.state.kind === 'message' && this.queue.available === 0 ? 'idle' : 'partial';
  }

  /** One transition; false when it has to wait for more bytes. */
  private step(): boolean {
    const q = this.queue;
    const state = this.state;
    switch (state.kind) {
      case 'message':
        if (q.available === 0) return false;
        if (this.holdBack()) {
          this.held = true;
          return false;
        }
        return this.readMessage();
      case 'rect-header':
        return this.readRectHeader(state.rectsLeft);
      case 'rect-body':
        if (!state.decoder.decode(q, this.ctx)) return false;
        this.rectDone(state.rectsLeft);
        return true;
      case 'cut-text':
        if (q.available < state.length) return false;
        this.messageDone();
        this.sink.serverCutText(q.read(state.length).toString('latin1'));
        return true;
      case 'ext-cut-text':
        if (q.available < state.length) return false;
        this.messageDone();
        this.events.extendedClipboard?.(Buffer.from(q.read(state.length)));
        return true;
      case 'skip-cut-text': {
        // dropped as it arrives: an oversized clipboard costs no memory, only time
        const n = Math.min(q.available, state.left);
        if (n === 0) return false;
        q.skip(n);
        if (n === state.left) this.messageDone();
        else this.state = { kind: 'skip-cut-text', left: state.left - n };
        return true;
      }
      case 'failed':
        throw state.error;
    }
  }

  private readMessage(): boolean {
    const q = this.queue;
    const type = q.peekU8();
    switch (type) {
      case ServerMessageType.FramebufferUpdate: {
        if (q.available < UPDATE_HEADER_LENGTH) return false;
        q.skip(2);
        const rects = q.readU16();
        if (rects === 0) this.updateDone();
        else this.state = { kind: 'rect-header', rectsLeft: rects };
        return true;
      }
      case ServerMessageType.SetColourMapEntries:
        throw new RfbProtocolError(
          'colour-map-unsupported',
          'server sent SetColourMapEntries although we asked for a true-colour pixel format',
        );
      case ServerMessageType.Bell:
        q.skip(1);
        this.completed++;
        this.sink.bell?.();
        return true;
      case ServerMessageType.ServerCutText: {
        if (q.available < CUT_TEXT_HEADER_LENGTH) return false;
        const length = q.peekU32(4);
        q.skip(CUT_TEXT_HEADER_LENGTH);
        if (this.extendedClipboard && length >= 0x8000_0000) {
          // Extended Clipboard: the length is negative; compressed text may be a little
          // longer than the text itself, hence the margin
          const n = 0x1_0000_0000 - length;
          if (n > this.limits.maxCutText + EXT_CLIPBOARD_MARGIN) {
            this.sink.serverCutTextDropped?.(n, this.limits.maxCutText);
            this.state = { kind: 'skip-cut-text', left: n };
          } else this.state = { kind: 'ext-cut-text', length: n };
          return true;
        }
        // checked before waiting for (or allocating) the text: a longer one is skipped
        if (length > this.limits.maxCutText) {
          this.sink.serverCutTextDropped?.(length, this.limits.maxCutText);
          this.state = { kind: 'skip-cut-text', left: length };
        } else this.state = { kind: 'cut-text', length };
        return true;
      }
      case ServerMessageType.EndOfContinuousUpdates:
        q.skip(1);
        this.completed++;
        this.events.endOfContinuousUpdates?.();
        return true;
      case ServerMessageType.ServerFence: {
        if (q.available < FENCE_HEADER_LENGTH) return false;
        const length = q.peekU8(8);
        if (length > MAX_FENCE_PAYLOAD) {
          throw new RfbProtocolError(
            'bad-fence',
            `ServerFence payload of ${length} bytes exceeds the ${MAX_FENCE_PAYLOAD}-byte maximum`,
          );
        }
        if (q.available < FENCE_HEADER_LENGTH + length) return false;
        const flags = q.peekU32(4);
        q.skip(FENCE_HEADER_LENGTH);
        const payload = Buffer.from(q.read(length));
        this.completed++;
        this.events.fence?.(flags, payload);
        return true;
      }
      default:
        throw new RfbProtocolError(
          'unknown-message-type',
          `server sent unknown message type ${type}`,
        );
    }
  }

  private readRectHeader(rectsLeft: number): boolean {
    const q = this.queue;
    if (q.available < RECT_HEADER_LENGTH) return false;
    const rect = {
      x: q.readU16(),
      y: q.readU16(),
      w: q.readU16(),
      h: q.readU16(),
      encoding: q.readS32(),
    };
    if (rect.encoding === Encoding.LastRect) {
      // the server sent 0xFFFF as a count it did not know; this ends the update
      this.updateDone();
      return true;
    }
    if (PIXEL_ENCODINGS.has(rect.encoding)) this.updateHasPixels = true;
    const factory = DECODERS.get(rect.encoding);
    if (
      factory === undefined ||
      (OPTIONAL_ENCODINGS.has(rect.encoding) && !this.accepted.has(rect.encoding))
    ) {
      throw new RfbProtocolError(
        'unknown-encoding',
        `server sent a rectangle in encoding ${rect.encoding}, which we did not ask for`,
      );
    }
    this.state = {
      kind: 'rect-body',
      rectsLeft,
      encoding: rect.encoding,
      decoder: factory(rect, this.ctx),
    };
    return true;
  }

  private rectDone(rectsLeft: number): void {
    if (rectsLeft <= 1) this.updateDone();
    else this.state = { kind: 'rect-header', rectsLeft: rectsLeft - 1 };
  }

  private messageDone(): void {
    this.state = { kind: 'message' };
    this.completed++;
  }

  private updateDone(): void {
    this.messageDone();
    const pixels = this.updateHasPixels;
    this.updateHasPixels = false;
    this.sink.updateEnd();
    this.events.updateEnd?.(pixels);
  }

  private resize(width: number, height: number): void {
    if (width === this.fb.width && height === this.fb.height) return;
    this.fb.width = width;
    this.fb.height = height;
    this.sink.resize(width, height);
    this.events.resized?.(width, height);
  }
}
