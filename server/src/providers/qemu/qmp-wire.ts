/**
 * The QEMU Machine Protocol on the wire: one JSON object per line in each direction, each
 * a greeting, a command's return or error, or an asynchronous event. The parser is strict: a
 * line that is too long, is not JSON, or is not one of those four shapes is a `QMP_PROTOCOL`
 * error, which closes that one connection (qmp-client.ts). Nothing else is affected.
 */
import { ProviderError } from '../types.js';

export type QmpErrorCode =
  /** the socket could not be reached (no file, refused, ...): QEMU is not there */
  | 'QMP_CONNECT'
  /** no greeting or no answer in time: QEMU is there but not answering (stopped, busy) */
  | 'QMP_TIMEOUT'
  /** QEMU sent something that is not QMP */
  | 'QMP_PROTOCOL'
  /** the connection closed before the answer came */
  | 'QMP_CLOSED'
  /** QEMU answered the command with an error */
  | 'QMP_COMMAND';

export class QmpError extends ProviderError {
  constructor(
    override readonly code: QmpErrorCode,
    message: string,
    /** QMP error class of a `QMP_COMMAND` error, e.g. `GenericError`, `CommandNotFound` */
    readonly errorClass?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message);
    this.name = 'QmpError';
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export type Incoming =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string }
  | { kind: 'event'; event: QmpEvent };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isVersionTriple(v: unknown): v is QmpGreeting['version']['qemu'] {
  return (
    isObject(v) &&
    typeof v.major === 'number' &&
    typeof v.minor === 'number' &&
    typeof v.micro === 'number'
  );
}

/** Classifies one parsed line; throws a QMP_PROTOCOL error for anything else. */
export function classifyQmpMessage(msg: unknown): Incoming {
  if (!isObject(msg)) throw new QmpError('QMP_PROTOCOL', 'QMP message is not a JSON object');
  if ('QMP' in msg) {
    const q = msg.QMP;
    if (
      isObject(q) &&
      isObject(q.version) &&
      isVersionTriple(q.version.qemu) &&
      typeof q.version.package === 'string' &&
      Array.isArray(q.capabilities) &&
      q.capabilities.every((c) => typeof c === 'string')
    ) {
      return {
        kind: 'greeting',
        greeting: {
          version: { qemu: q.version.qemu, package: q.version.package },
          capabilities: q.capabilities,
        },
      };
    }
    throw new QmpError('QMP_PROTOCOL', 'malformed QMP greeting');
  }
  if ('return' in msg) return { kind: 'return', id: msg.id, value: msg.return };
  if ('error' in msg) {
    const e = msg.error;
    if (isObject(e) && typeof e.class === 'string' && typeof e.desc === 'string') {
      return { kind: 'error', id: msg.id, errorClass: e.class, desc: e.desc };
    }
    throw new QmpError('QMP_PROTOCOL', 'malformed QMP error answer');
  }
  if ('event' in msg) {
    const ts = msg.timestamp;
    if (
      typeof msg.event === 'string' &&
      (msg.data === undefined || isObject(msg.data)) &&
      isObject(ts) &&
      typeof ts.seconds === 'number' &&
      typeof ts.microseconds === 'number'
    ) {
      const event: QmpEvent = {
        event: msg.event,
        timestamp: { seconds: ts.seconds, microseconds: ts.microseconds },
      };
      if (msg.data !== undefined) event.data = msg.data;
      return { kind: 'event', event };
    }
    throw new QmpError('QMP_PROTOCOL', 'malformed QMP event');
  }
  throw new QmpError('QMP_PROTOCOL', 'unknown QMP message (no QMP, return, error or event member)');
}

/**
 * Splits a byte stream into lines, keeping partial lines between chunks so that a stream
 * split anywhere gives the same lines. Throws a QMP_PROTOCOL error once a line exceeds
 * the cap, counted before its newline arrives.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(private readonly maxLineBytes: number) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.pending + piece.length > this.maxLineBytes) throw this.tooLong();
      const line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.pending = 0;
      lines.push(line.toString('utf8'));
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      if (this.pending + rest.length > this.maxLineBytes) throw this.tooLong();
      // copy: the caller's chunk may be reused by the stream
      this.parts.push(Buffer.from(rest));
      this.pending += rest.length;
    }
    return lines;
  }

  private tooLong(): QmpError {
    return new QmpError('QMP_PROTOCOL', `QMP line longer than ${this.maxLineBytes} bytes`);
  }
}
