/**
 * Fences (RFB extension 248): we answer the server's fence requests, and use fences of our
 * own as a keepalive: after keepaliveMs of silence from the server we send one, and if that
 * goes unanswered for as long again the connection is dead ('inactivity-timeout'). Only
 * servers that have shown fence support (TigerVNC) get keepalive fences.
 */
import { encodeClientFence } from './client-messages.js';
import { FenceFlag } from './constants.js';
import { RfbError, RfbProtocolError } from './errors.js';

/** Marks our keepalive fences (payload), so their answers are told apart. */
const KEEPALIVE_TAG = 'vdi-keepalive:';
/** Fence flags we honour in answers: we process messages strictly in order. */
const FENCE_FLAGS_HONOURED = FenceFlag.BlockBefore | FenceFlag.BlockAfter;

export interface FencesOptions {
  /** silence after which a keepalive fence goes out, ms; 0 disables keepalive */
  keepaliveMs: number;
  write(bytes: Buffer): void;
  /** the server stopped answering: the connection must end with this error */
  fail(error: RfbError): void;
}

export class Fences {
  /** the server has sent a fence, so it supports them */
  private seenValue = false;
  private lastReceived = 0;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private keepaliveSeq = 0;
  /** our unanswered keepalive fence */
  private keepalivePayload: Buffer | undefined;

  constructor(private readonly opts: FencesOptions) {}

  get seen(): boolean {
    return this.seenValue;
  }

  /** Bytes arrived from the server: it is alive. */
  received(): void {
    this.lastReceived = Date.now();
  }

  /** A ServerFence: answer a request, match an answer to our keepalive, refuse anything else. */
  onFence(flags: number, payload: Buffer): void {
    this.seenValue = true;
    if ((flags & FenceFlag.Request) !== 0) {
      // answer with the same payload, the ordering flags we honour, and no request bit
      this.opts.write(encodeClientFence(flags & FENCE_FLAGS_HONOURED, payload));
      return;
    }
    if (this.keepalivePayload !== undefined && payload.equals(this.keepalivePayload)) {
      this.keepalivePayload = undefined;
      return;
    }
    throw new RfbProtocolError(
      'unexpected-fence',
      'server sent a fence answer to a request we never made',
    );
  }

  /** Start checking for silence (once the connection is ready). */
  startKeepalive(): void {
    if (this.opts.keepaliveMs <= 0) return;
    this.keepaliveTimer = setInterval(() => this.checkKeepalive(), this.opts.keepaliveMs);
    this.keepaliveTimer.unref();
  }

  stop(): void {
    clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private checkKeepalive(): void {
    const silentMs = Date.now() - this.lastReceived;
    if (silentMs < this.opts.keepaliveMs) return;
    if (this.keepalivePayload !== undefined) {
      this.opts.fail(
        new RfbError(
          'inactivity-timeout',
          `the VNC server has not answered for ${silentMs} ms (keepalive fence unanswered)`,
        ),
      );
      return;
    }
    if (!this.seenValue) return;
    this.keepalivePayload = Buffer.from(`${KEEPALIVE_TAG}${++this.keepaliveSeq}`, 'latin1');
    this.opts.write(encodeClientFence(FenceFlag.Request, this.keepalivePayload));
  }
}
