import { DesktopSizeReason, DesktopSizeStatus, MAX_SCREENS } from '../constants.js';
import { RfbProtocolError } from '../errors.js';
import type { ByteQueue } from '../byte-queue.js';
import { assertInFramebuffer, type RectHeader } from '../rect.js';
import type { DecodeContext, RectDecoder, RectDecoderFactory } from './decoder.js';
import {
  assertFramebufferSize,
  type DesktopSizeReasonName,
  type DesktopSizeStatusName,
  type Screen,
} from '../framebuffer-size.js';

/** Body header: U8 number-of-screens, 3 bytes padding. */
const BODY_HEADER_LENGTH = 4;
/** Each screen: U32 id, 4 × U16, U32 flags. */
const SCREEN_LENGTH = 16;

/**
 * ExtendedDesktopSize pseudo-encoding: x is the reason, y the status, w×h the new
 * framebuffer size; the body is the screen layout.
 */
export const extendedDesktopSizeDecoder: RectDecoderFactory = (rect) =>
  new ExtendedDesktopSizeDecoder(rect);

class ExtendedDesktopSizeDecoder implements RectDecoder {
  constructor(private readonly rect: RectHeader) {}

  decode(queue: ByteQueue, ctx: DecodeContext): boolean {
    if (queue.available < BODY_HEADER_LENGTH) return false;
    const count = queue.peekU8();
    if (count === 0 || count > MAX_SCREENS) {
      throw new RfbProtocolError(
        'bad-screen-layout',
        `ExtendedDesktopSize lists ${count} screens; accepted are 1 to ${MAX_SCREENS}`,
      );
    }
    if (queue.available < BODY_HEADER_LENGTH + count * SCREEN_LENGTH) return false;
    queue.skip(BODY_HEADER_LENGTH);
    const screens: Screen[] = [];
    for (let i = 0; i < count; i++) {
      screens.push({
        id: queue.readU32(),
        x: queue.readU16(),
        y: queue.readU16(),
        width: queue.readU16(),
        height: queue.readU16(),
        flags: queue.readU32(),
      });
    }

    const { x: reasonCode, y: statusCode, w: width, h: height } = this.rect;
    const reason = reasonName(reasonCode);
    const status = statusName(statusCode);
    const applied = !(
      reasonCode === DesktopSizeReason.ThisClient && statusCode !== DesktopSizeStatus.Ok
    );
    if (applied) {
      assertFramebufferSize(width, height, ctx.limits, 'ExtendedDesktopSize');
      for (const s of screens) {
        assertInFramebuffer(
          `screen ${s.id}`,
          s.x,
          s.y,
          s.width,
          s.height,
          width,
          height,
          'bad-screen-layout',
        );
      }
      ctx.resize(width, height);
    }
    ctx.extendedDesktopSize({ reason, status, applied, width, height, screens });
    return true;
  }
}

function reasonName(code: number): DesktopSizeReasonName {
  switch (code) {
    case DesktopSizeReason.ThisClient:
      return 'this-client';
    case DesktopSizeReason.OtherClient:
      return 'other-client';
    default:
      // the spec: treat unknown reasons as a server-side change
      return 'server';
  }
}

function statusName(code: number): DesktopSizeStatusName {
  switch (code) {
    case DesktopSizeStatus.Ok:
      return 'ok';
    case DesktopSizeStatus.Prohibited:
      return 'prohibited';
    case DesktopSizeStatus.OutOfResources:
      return 'out-of-resources';
    case DesktopSizeStatus.InvalidLayout:
      return 'invalid-layout';
    default:
      return 'unknown-error';
  }
}
