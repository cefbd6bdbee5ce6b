/**
 * How framebuffer updates keep coming: with continuous updates (the -313 pseudo-encoding)
 * when the server offers them, the server pushes; otherwise exactly one
 * FramebufferUpdateRequest is in flight, and the next goes out once its update has ended.
 * Pausing (nobody is watching) stops both.
 */
import type { Logger } from 'pino';
import {
  encodeEnableContinuousUpdates,
  encodeFramebufferUpdateRequest,
} from './client-messages.js';

/** What the update flow needs of its connection. */
export interface UpdateFlowHost {
  /** can messages be sent now (after ServerInit, before close)? */
  canSend(): boolean;
  write(bytes: Buffer): void;
  /** the current framebuffer size; undefined before ServerInit */
  size(): { width: number; height: number } | undefined;
  log: Logger;
}

export class UpdateFlow {
  /** a FramebufferUpdateRequest awaits its update (request/response mode) */
  private updateRequested = false;
  /** an update ended during this parse pass: request the next one once, after the pass */
  private updateWanted = false;
  private cuSupported = false;
  private cuEnabled = false;
  /** we asked the server to stop pushing and await its EndOfContinuousUpdates */
  private cuStopping = false;
  private paused = false;
  private pushing = false;

  constructor(
    private readonly host: UpdateFlowHost,
    /** offer continuous updates at all */
    private readonly offerContinuousUpdates: boolean,
  ) {}

  /** The server pushes updates (continuous updates enabled, and not fallen back since). */
  get serverPushes(): boolean {
    return this.pushing;
  }

  /** Ask for the whole screen (non-incremental); false when nothing could be sent. */
  requestFull(): boolean {
    const size = this.host.size();
    if (!this.host.canSend() || size === undefined) return false;
    this.host.write(encodeFramebufferUpdateRequest(false, 0, 0, size.width, size.height));
    this.updateRequested = true;
    return true;
  }

  /** A whole FramebufferUpdate has been applied. */
  updateEnded(): void {
    this.updateRequested = false;
    // one request after the pass, however many updates it held (a flood of empty updates
    // costs one answer per chunk read, not one per update)
    this.updateWanted = true;
  }

  /** A parse pass is over: send the one request its updates call for. */
  afterPass(): void {
    if (!this.updateWanted) return;
    this.updateWanted = false;
    this.requestIncremental();
  }

  /**
   * The first EndOfContinuousUpdates answers our -313 pseudo-encoding: the server can push.
   * Later ones mean pushing stopped: expected after pause(), otherwise we fall back to
   * requests.
   */
  endOfContinuousUpdates(): void {
    if (!this.cuSupported) {
      this.cuSupported = true;
      this.host.log.debug('server supports continuous updates');
      if (!this.paused) this.enableContinuousUpdates();
      return;
    }
    if (this.cuStopping) {
      this.cuStopping = false;
      return;
    }
    this.cuEnabled = false;
    this.pushing = false;
    this.host.log.info('server stopped continuous updates; falling back to update requests');
    this.requestIncremental();
  }

  /** The framebuffer changed size: the pushed area was the old framebuffer; cover the new one. */
  resized(): void {
    if (this.cuEnabled) this.enableContinuousUpdates();
  }

  /** Stop updates; with continuous updates the server is told to stop pushing. */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    const size = this.host.size();
    if (this.cuEnabled && this.host.canSend() && size !== undefined) {
      this.host.write(encodeEnableContinuousUpdates(false, 0, 0, size.width, size.height));
      this.cuEnabled = false;
      this.cuStopping = true;
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (!this.host.canSend()) return;
    if (this.cuSupported && this.offerContinuousUpdates) this.enableContinuousUpdates();
    else this.requestIncremental();
  }

  /** Request/response mode: keep exactly one request in flight. */
  private requestIncremental(): void {
    const size = this.host.size();
    if (
      this.cuEnabled ||
      this.paused ||
      this.updateRequested ||
      !this.host.canSend() ||
      size === undefined
    )
      return;
    this.host.write(encodeFramebufferUpdateRequest(true, 0, 0, size.width, size.height));
    this.updateRequested = true;
  }

  private enableContinuousUpdates(): void {
    const size = this.host.size();
    if (size === undefined || !this.host.canSend()) return;
    this.host.write(encodeEnableContinuousUpdates(true, 0, 0, size.width, size.height));
    this.cuEnabled = true;
    // TigerVNC drops outstanding requests when pushing starts; forget ours so that a later
    // fallback to requests is not stuck waiting for an answer that will not come
    this.updateRequested = false;
    this.pushing = true;
  }
}
