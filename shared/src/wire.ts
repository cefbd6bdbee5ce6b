import {
  Decoder as BaseDecoder,
  Encoder as BaseEncoder,
  PacketType,
  protocol,
  type Packet,
} from 'socket.io-parser';
import { FRAME_MAGIC } from './frame.js';

/**
 * Socket.IO parser that sends each frame as ONE binary WebSocket message
 * (docs/architecture.md, decision 7). The default parser sends a binary event as a JSON header message with a placeholder
 * plus a second message with the bytes: ~45 bytes and one more message per frame, which is a
 * third of a small typing update. Here a `frame` event's bytes go out alone; the receiver
 * knows them by the frame magic byte. Every other packet uses the default encoding.
 *
 * Both ends must use it: `new Server(http, { parser: vdiParser })`, `io(url, { parser: vdiParser })`.
 */

const FRAME_EVENT = 'frame';

type Binary = ArrayBuffer | ArrayBufferView;

function isBinary(x: unknown): x is Binary {
  return x instanceof ArrayBuffer || ArrayBuffer.isView(x);
}

function firstByte(b: Binary): number | undefined {
  const u8 =
    b instanceof ArrayBuffer
      ? new Uint8Array(b, 0, Math.min(1, b.byteLength))
      : new Uint8Array(b.buffer, b.byteOffset, Math.min(1, b.byteLength));
  return u8[0];
}

export class Encoder extends BaseEncoder {
  override encode(packet: Packet): unknown[] {
    const d = packet.data as unknown[] | undefined;
    if (
      packet.type === PacketType.EVENT &&
      packet.nsp === '/' &&
      packet.id === undefined &&
      Array.isArray(d) &&
      d.length === 2 &&
      d[0] === FRAME_EVENT &&
      isBinary(d[1])
    ) {
      return [d[1]];
    }
    return super.encode(packet);
  }
}

export class Decoder extends BaseDecoder {
  /** binary attachments the default decoder still expects for a BINARY_EVENT/ACK it began */
  private attachments = 0;

  override add(chunk: unknown): void {
    if (typeof chunk === 'string') {
      // "5<n>-…" / "6<n>-…": a binary event/ack whose n attachments follow as binary messages
      const m = /^[56](\d+)-/.exec(chunk);
      if (m) this.attachments = Number(m[1]);
      super.add(chunk);
      return;
    }
    if (this.attachments > 0) {
      this.attachments--;
      super.add(chunk);
      return;
    }
    if (isBinary(chunk) && firstByte(chunk) === FRAME_MAGIC) {
      this.emitReserved('decoded', {
        type: PacketType.EVENT,
        nsp: '/',
        data: [FRAME_EVENT, chunk],
      });
      return;
    }
    super.add(chunk); // the default decoder refuses unexpected binary data
  }
}

export const vdiParser = { protocol, PacketType, Encoder, Decoder };
