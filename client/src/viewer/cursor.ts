/** The desktop's cursor shape as a CSS cursor (the server sends it apart from the pixels). */
import type { CursorMsg } from '@vdi/shared';

/** Browsers ignore cursor images larger than this (Chrome: 128×128). */
const MAX_CURSOR_PX = 128;

export function toBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  return data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function base64(bytes: Uint8Array): string {
  let s = '';
  const CHUNK = 0x8000; // String.fromCharCode argument limit stays far away
  for (let i = 0; i < bytes.byteLength; i += CHUNK) {
    s += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(s);
}

/**
 * The CSS `cursor` value for a cursor message: `none` for a hidden cursor (empty image),
 * else the PNG as a data: URL with its hotspot (img-src allows data:).
 */
export function cursorCss(msg: CursorMsg): string {
  const png = toBytes(msg.png);
  if (msg.width === 0 || msg.height === 0 || png.byteLength === 0) return 'none';
  if (msg.width > MAX_CURSOR_PX || msg.height > MAX_CURSOR_PX) return 'default';
  const hotX = Math.max(0, Math.min(msg.width - 1, Math.round(msg.hotX)));
  const hotY = Math.max(0, Math.min(msg.height - 1, Math.round(msg.hotY)));
  return `url("data:image/png;base64,${base64(png)}") ${hotX} ${hotY}, auto`;
}
