/**
 * Encoders for the client-to-server messages we send. Each returns a fresh Buffer ready
 * for socket.write. Callers pass values already in range (the client clamps them).
 */
import { ClientMessageType, MAX_FENCE_PAYLOAD } from './constants.js';
import type { Screen } from './framebuffer-size.js';

/**
 * SetPixelFormat for what the sink expects: 32 bpp, depth 24, little-endian, true colour,
 * red/green/blue max 255 at shifts 0/8/16, so each pixel arrives as bytes R, G, B, X.
 */
export function encodeSetPixelFormat(): Buffer {
  const b = Buffer.alloc(20);
  b[0] = ClientMessageType.SetPixelFormat;
  // bytes 1-3 padding
  b[4] = 32; // bits-per-pixel
  b[5] = 24; // depth
  b[6] = 0; // big-endian-flag: no
  b[7] = 1; // true-colour-flag: yes
  b.writeUInt16BE(255, 8); // red-max
  b.writeUInt16BE(255, 10); // green-max
  b.writeUInt16BE(255, 12); // blue-max
  b[14] = 0; // red-shift
  b[15] = 8; // green-shift
  b[16] = 16; // blue-shift
  // bytes 17-19 padding
  return b;
}

export function encodeSetEncodings(encodings: readonly number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * encodings.length);
  b[0] = ClientMessageType.SetEncodings;
  b.writeUInt16BE(encodings.length, 2);
  encodings.forEach((e, i) => b.writeInt32BE(e, 4 + 4 * i));
  return b;
}

/** FramebufferUpdateRequest and EnableContinuousUpdates share this layout: type, flag, region. */
function encodeRegionMessage(
  type: number,
  flag: boolean,
  x: number,
  y: number,
  w: number,
  h: number,
): Buffer {
  const b = Buffer.alloc(10);
  b[0] = type;
  b[1] = flag ? 1 : 0;
  b.writeUInt16BE(x, 2);
  b.writeUInt16BE(y, 4);
  b.writeUInt16BE(w, 6);
  b.writeUInt16BE(h, 8);
  return b;
}

export function encodeFramebufferUpdateRequest(
  incremental: boolean,
  x: number,
  y: number,
  w: number,
  h: number,
): Buffer {
  return encodeRegionMessage(ClientMessageType.FramebufferUpdateRequest, incremental, x, y, w, h);
}

export function encodeKeyEvent(keysym: number, down: boolean): Buffer {
  const b = Buffer.alloc(8);
  b[0] = ClientMessageType.KeyEvent;
  b[1] = down ? 1 : 0;
  b.writeUInt32BE(keysym >>> 0, 4);
  return b;
}

export function encodePointerEvent(x: number, y: number, buttonMask: number): Buffer {
  const b = Buffer.alloc(6);
  b[0] = ClientMessageType.PointerEvent;
  b[1] = buttonMask & 0xff;
  b.writeUInt16BE(x, 2);
  b.writeUInt16BE(y, 4);
  return b;
}

/** `text` is already Latin-1 bytes (see encodeLatin1). */
export function encodeClientCutText(text: Uint8Array): Buffer {
  const b = Buffer.alloc(8 + text.length);
  b[0] = ClientMessageType.ClientCutText;
  b.writeUInt32BE(text.length, 4);
  b.set(text, 8);
  return b;
}

export function encodeEnableContinuousUpdates(
  enable: boolean,
  x: number,
  y: number,
  w: number,
  h: number,
): Buffer {
  return encodeRegionMessage(ClientMessageType.EnableContinuousUpdates, enable, x, y, w, h);
}

export function encodeClientFence(flags: number, payload: Uint8Array): Buffer {
  if (payload.length > MAX_FENCE_PAYLOAD)
    throw new RangeError(`fence payload over ${MAX_FENCE_PAYLOAD} bytes`);
  const b = Buffer.alloc(9 + payload.length);
  b[0] = ClientMessageType.ClientFence;
  b.writeUInt32BE(flags >>> 0, 4);
  b[8] = payload.length;
  b.set(payload, 9);
  return b;
}

export function encodeSetDesktopSize(
  width: number,
  height: number,
  screens: readonly Screen[],
): Buffer {
  const b = Buffer.alloc(8 + 16 * screens.length);
  b[0] = ClientMessageType.SetDesktopSize;
  b.writeUInt16BE(width, 2);
  b.writeUInt16BE(height, 4);
  b[6] = screens.length;
  screens.forEach((s, i) => {
    const at = 8 + 16 * i;
    b.writeUInt32BE(s.id >>> 0, at);
    b.writeUInt16BE(s.x, at + 4);
    b.writeUInt16BE(s.y, at + 6);
    b.writeUInt16BE(s.width, at + 8);
    b.writeUInt16BE(s.height, at + 10);
    b.writeUInt32BE(s.flags >>> 0, at + 12);
  });
  return b;
}

/**
 * Text for ClientCutText: RFB cut text is Latin-1 with bare '\n' line ends. Code points
 * above U+00FF become '?', CR LF and lone CR become LF, and the result is cut at
 * `maxBytes`.
 */
export function encodeLatin1(text: string, maxBytes: number): Buffer {
  const normalised = text.replace(/\r\n?/g, '\n');
  // one output byte per code point, and a string has at least as many code units as code points
  const out = Buffer.allocUnsafe(Math.min(normalised.length, Math.max(0, maxBytes)));
  let n = 0;
  for (const ch of normalised) {
    if (n >= out.length) break;
    const cp = ch.codePointAt(0) as number;
    out[n++] = cp <= 0xff ? cp : 0x3f; // '?'
  }
  return out.subarray(0, n);
}
