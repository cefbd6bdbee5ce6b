import { ServerMessageParser } from '../../../../src/rfb/parser.js';
import {
  DEFAULT_RFB_LIMITS,
  type FramebufferSink,
  type RfbLimits,
} from '../../../../src/rfb/types.js';
import { RecordingSink, type SinkCall } from './sinks.js';

export type ParserEvent =
  | { ev: 'updateEnd'; pixels: boolean }
  | { ev: 'resized'; width: number; height: number }
  | {
      ev: 'eds';
      reason: string;
      status: string;
      applied: boolean;
      width: number;
      height: number;
      screens: number;
    }
  | { ev: 'endOfContinuousUpdates' }
  | { ev: 'fence'; flags: number; payload: string };

export interface ParserRun {
  calls: SinkCall[];
  events: ParserEvent[];
  error: unknown;
  parser: ServerMessageParser;
}

/** A parser over a `width`×`height` framebuffer that records sink calls and events. */
export function makeParser(
  width: number,
  height: number,
  limits: RfbLimits = DEFAULT_RFB_LIMITS,
  sink: FramebufferSink = new RecordingSink(),
  encodings: readonly number[] = [],
): { parser: ServerMessageParser; events: ParserEvent[]; sink: FramebufferSink } {
  const events: ParserEvent[] = [];
  const parser = new ServerMessageParser({
    sink,
    width,
    height,
    limits,
    encodings,
    events: {
      updateEnd: (pixels) => events.push({ ev: 'updateEnd', pixels }),
      resized: (w, h) => events.push({ ev: 'resized', width: w, height: h }),
      extendedDesktopSize: (e) =>
        events.push({
          ev: 'eds',
          reason: e.reason,
          status: e.status,
          applied: e.applied,
          width: e.width,
          height: e.height,
          screens: e.screens.length,
        }),
      endOfContinuousUpdates: () => events.push({ ev: 'endOfContinuousUpdates' }),
      fence: (flags, payload) =>
        events.push({ ev: 'fence', flags, payload: payload.toString('hex') }),
    },
  });
  return { parser, events, sink };
}

/** Feed chunks in order; stops at the first error and returns it. */
export function runParser(
  chunks: Uint8Array[],
  width = 64,
  height = 48,
  limits: RfbLimits = DEFAULT_RFB_LIMITS,
  encodings: readonly number[] = [],
): ParserRun {
  const sink = new RecordingSink();
  const { parser, events } = makeParser(width, height, limits, sink, encodings);
  let error: unknown;
  try {
    for (const c of chunks) parser.push(c);
  } catch (err) {
    error = err;
  }
  return { calls: sink.calls, events, error, parser };
}

/** Every single byte as its own chunk. */
export function bytewise(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}
