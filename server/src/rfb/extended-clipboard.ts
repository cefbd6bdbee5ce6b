/**
 * The Extended Clipboard pseudo-encoding (0xC0A1E5CE, TigerVNC and noVNC): clipboard
 * messages with a negative length carry flags and, for text, UTF-8 instead of Latin-1. The
 * server announces its capabilities, then tells of a new clipboard (notify); the other side
 * asks for it (request) and gets it zlib-compressed (provide). Both directions work the same
 * way. Text is NUL-terminated with CR LF line ends on the wire.
 */
import zlib from 'node:zlib';
import { ClientMessageType } from './constants.js';

/** The pseudo-encoding's number (0xC0A1E5CE as a signed 32-bit value). */
export const EXTENDED_CLIPBOARD_ENCODING = 0xc0a1e5ce | 0;

export const ExtClip = {
  /** format: UTF-8 text (the only one this gateway handles) */
  Text: 1 << 0,
  Caps: 1 << 24,
  Request: 1 << 25,
  Peek: 1 << 26,
  Notify: 1 << 27,
  Provide: 1 << 28,
} as const;

const FORMAT_MASK = 0xffff;

export type ExtClipMessage =
  | { action: 'caps'; flags: number; textMax: number | undefined }
  | { action: 'request' | 'peek' | 'notify'; text: boolean }
  | { action: 'provide'; text: string | undefined }
  /** provided text over the limit: not inflated past it, not delivered */
  | { action: 'too-large'; limit: number }
  | { action: 'invalid'; reason: string };

/**
 * One extended clipboard message's payload (what follows the negative length). Text over
 * `maxText` bytes is never inflated past the limit.
 */
export function parseExtendedClipboard(payload: Buffer, maxText: number): ExtClipMessage {
  if (payload.length < 4) return { action: 'invalid', reason: 'no flags' };
  const flags = payload.readUInt32BE(0);
  const text = (flags & ExtClip.Text) !== 0;
  if (flags & ExtClip.Caps) {
    // one U32 size per format bit, in bit order; text (bit 0) comes first
    const formats = flags & FORMAT_MASK;
    let count = 0;
    for (let f = formats; f; f >>>= 1) count += f & 1;
    if (payload.length < 4 + 4 * count) return { action: 'invalid', reason: 'short caps' };
    return { action: 'caps', flags, textMax: text ? payload.readUInt32BE(4) : undefined };
  }
  if (flags & ExtClip.Provide) {
    if (!text) return { action: 'provide', text: undefined };
    let raw: Buffer;
    try {
      // TigerVNC ends the stream with a sync flush, not a finish
      raw = zlib.inflateSync(payload.subarray(4), {
        maxOutputLength: maxText + 5,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
    } catch (err) {
      if (err instanceof RangeError) return { action: 'too-large', limit: maxText };
      return { action: 'invalid', reason: 'bad zlib data' };
    }
    if (raw.length < 4) return { action: 'invalid', reason: 'short text' };
    const length = raw.readUInt32BE(0);
    if (length > maxText + 1) return { action: 'too-large', limit: maxText };
    if (raw.length < 4 + length) return { action: 'invalid', reason: 'text cut short' };
    let bytes = raw.subarray(4, 4 + length);
    if (bytes.length > 0 && bytes[bytes.length - 1] === 0) bytes = bytes.subarray(0, -1);
    return { action: 'provide', text: bytes.toString('utf8').replace(/\r\n/g, '\n') };
  }
  if (flags & ExtClip.Request) return { action: 'request', text };
  if (flags & ExtClip.Peek) return { action: 'peek', text };
  if (flags & ExtClip.Notify) return { action: 'notify', text };
  return { action: 'invalid', reason: `no action in flags 0x${flags.toString(16)}` };
}

function message(flags: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12 + body.length);
  b[0] = ClientMessageType.ClientCutText;
  b.writeInt32BE(-(4 + body.length), 4);
  b.writeUInt32BE(flags >>> 0, 8);
  body.copy(b, 12);
  return b;
}

/** Our capabilities: text up to `maxText` bytes, every action. */
export function encodeClipboardCaps(maxText: number): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(maxText);
  const actions = ExtClip.Request | ExtClip.Peek | ExtClip.Notify | ExtClip.Provide;
  return message(ExtClip.Caps | actions | ExtClip.Text, size);
}

export function encodeClipboardNotify(hasText: boolean): Buffer {
  return message(ExtClip.Notify | (hasText ? ExtClip.Text : 0));
}

export function encodeClipboardRequest(): Buffer {
  return message(ExtClip.Request | ExtClip.Text);
}

/** Text as UTF-8 with CR LF line ends and a NUL, cut (on a character) at `maxBytes`. */
export function encodeClipboardProvide(text: string, maxBytes: number): Buffer {
  let utf8 = Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8');
  if (utf8.length > maxBytes) {
    let end = maxBytes;
    // never cut a character in two: back off continuation bytes (10xxxxxx)
    while (end > 0 && (utf8[end]! & 0xc0) === 0x80) end--;
    utf8 = utf8.subarray(0, end);
  }
  const raw = Buffer.alloc(4 + utf8.length + 1);
  raw.writeUInt32BE(utf8.length + 1, 0);
  utf8.copy(raw, 4);
  return message(ExtClip.Provide | ExtClip.Text, zlib.deflateSync(raw));
}
