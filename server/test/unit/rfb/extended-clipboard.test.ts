import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  EXTENDED_CLIPBOARD_ENCODING,
  ExtClip,
  encodeClipboardCaps,
  encodeClipboardNotify,
  encodeClipboardProvide,
  parseExtendedClipboard,
} from '../../../src/rfb/extended-clipboard.js';

/** the payload of a client message (after type, padding and the negative length) */
const payloadOf = (msg: Buffer) => {
  expect(msg[0]).toBe(6);
  expect(msg.readInt32BE(4)).toBe(-(msg.length - 8));
  return msg.subarray(8);
};

describe('Extended Clipboard', () => {
  it('is pseudo-encoding 0xC0A1E5CE', () => {
    expect(EXTENDED_CLIPBOARD_ENCODING >>> 0).toBe(0xc0a1e5ce);
  });

  it('provides Unicode text as zlib UTF-8 with CR LF and a NUL, and reads it back', () => {
    const text = 'Zoë – 東京 🙂\nline two';
    const msg = encodeClipboardProvide(text, 1024);
    const payload = payloadOf(msg);
    expect(payload.readUInt32BE(0)).toBe(ExtClip.Provide | ExtClip.Text);
    const raw = zlib.inflateSync(payload.subarray(4));
    const bytes = Buffer.from(text.replace('\n', '\r\n'), 'utf8');
    expect(raw.readUInt32BE(0)).toBe(bytes.length + 1);
    expect(raw.subarray(4, 4 + bytes.length).equals(bytes)).toBe(true);
    expect(raw[raw.length - 1]).toBe(0);
    expect(parseExtendedClipboard(payload, 1024)).toEqual({ action: 'provide', text });
  });

  it('cuts provided text at the limit on a character boundary', () => {
    const msg = encodeClipboardProvide('ééé', 5); // 6 bytes of UTF-8
    const back = parseExtendedClipboard(payloadOf(msg), 1024);
    expect(back).toEqual({ action: 'provide', text: 'éé' });
  });

  it('refuses provided text over the limit without inflating it all', () => {
    const big = encodeClipboardProvide('x'.repeat(100_000), 200_000);
    expect(parseExtendedClipboard(payloadOf(big), 1000)).toEqual({
      action: 'too-large',
      limit: 1000,
    });
  });

  it('reads caps, notify and request; bad zlib is invalid, not a throw', () => {
    const caps = Buffer.alloc(12);
    caps.writeUInt32BE((ExtClip.Caps | ExtClip.Notify | ExtClip.Text | 0b10) >>> 0, 0);
    caps.writeUInt32BE(20_000, 4);
    caps.writeUInt32BE(5_000, 8);
    expect(parseExtendedClipboard(caps, 1000)).toEqual({
      action: 'caps',
      flags: (ExtClip.Caps | ExtClip.Notify | ExtClip.Text | 0b10) >>> 0,
      textMax: 20_000,
    });
    expect(parseExtendedClipboard(caps.subarray(0, 8), 1000).action).toBe('invalid');
    expect(parseExtendedClipboard(payloadOf(encodeClipboardNotify(true)), 10)).toEqual({
      action: 'notify',
      text: true,
    });
    const bad = Buffer.concat([Buffer.from([0x10, 0, 0, 1]), Buffer.from('not zlib at all')]);
    expect(parseExtendedClipboard(bad, 10).action).toBe('invalid');
    expect(parseExtendedClipboard(Buffer.alloc(2), 10).action).toBe('invalid');
    const ours = payloadOf(encodeClipboardCaps(4096));
    expect(parseExtendedClipboard(ours, 10)).toMatchObject({ action: 'caps', textMax: 4096 });
  });
});
