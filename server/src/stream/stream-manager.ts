import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { sameEndpoint, type RfbEndpoint } from '../rfb/endpoint.js';
import { RfbClient } from '../rfb/client.js';
import type { RfbClientOptions } from '../rfb/client-api.js';
import { RfbError } from '../rfb/errors.js';
import { DEFAULT_RFB_LIMITS, type RfbLimits } from '../rfb/types.js';
import { DesktopStream } from './desktop-stream.js';
import { StagingSink } from './staging.js';
import type { CursorShape } from './cursor-encoder.js';
import { realTimer, type SetTimer } from './timer.js';

export interface StreamHooks {
  cursor(desktopId: string, shape: CursorShape): void;
  clipboard(desktopId: string, text: string): void;
  /** the desktop's clipboard was over the pool's limit and was not passed on */
  clipboardDropped?(desktopId: string, length: number, limit: number): void;
  /**
   * the RFB connection to a desktop closed unexpectedly (viewers are told; the broker checks
   * health); `error` says why, when it failed rather than being closed
   */
  lost(desktopId: string, reason: string, error?: RfbError): void;
}

export interface StreamManagerOptions {
  /** Keep a desktop's RFB connection this long after its last viewer leaves, ms. @default LINGER_MS */
  lingerMs?: number;
  /** Schedules the linger timers; tests pass one they fire by hand. @default setTimeout */
  setTimer?: SetTimer;
  /** Timeouts and bounds of each RFB connection (see RfbClientOptions). */
  rfb?: Pick<
    RfbClientOptions,
    | 'connectTimeoutMs'
    | 'keepaliveMs'
    | 'sendBufferBytes'
    | 'sendStallMs'
    | 'messageTimeoutMs'
    | 'remoteEncodings'
  >;
}

interface Entry {
  stream: DesktopStream;
  client: RfbClient | undefined;
  refs: number;
  ready: Promise<DesktopStream>;
  linger: ReturnType<SetTimer> | undefined;
  endpoint: RfbEndpoint;
  /** why the link closed, once it has */
  closed: RfbError | undefined;
  limits: RfbLimits;
  /** a move is under way: the source's link closing is expected, not a loss */
  moving: boolean;
  /** the link closed while moving (told as lost if the move is abandoned) */
  closedWhileMoving: { reason: string; error?: RfbError } | undefined;
}

/**
 * A desktop's link during a live migration (decision 12): a second link to the destination
 * draws aside; at the switch the stream takes it over; the viewers stay attached.
 */
export interface LinkMove {
  /** hold viewers' input from now on; resolves once what was sent has left for the source */
  holdInput(): Promise<void>;
  /** the destination runs the desktop: take its link and framebuffer, send held input */
  switchOver(): Promise<{ changedPixels: number }>;
  /** the move failed: drop the second link, send held input to the source */
  abort(reason: string): void;
}

/** how long the switch waits for the destination's screen after asking for it, ms */
const SWITCH_UPDATE_MS = 3_000;
/** how long holdInput waits for input already written to leave, ms */
const DRAIN_MS = 500;

/** Keep a desktop's RFB connection this long after its last viewer leaves, ms. */
export const LINGER_MS = 15_000;
/** Give up connecting to a desktop after this long, ms. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Most bytes waiting towards one desktop unless configured, bytes. */
const DEFAULT_SEND_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * One RFB connection and mirror per desktop, shared by all its viewers (and by thumbnails).
 * Opened on first use, closed a while after the last viewer leaves.
 *
 * A desktop's connection can be replaced (lost and opened again, moved): every reference and
 * timer belongs to one connection (`Entry`), and acts on that one only, never on whichever
 * connection the desktop has by then.
 */
export class StreamManager {
  private readonly entries = new Map<string, Entry>();
  private readonly lingerMs: number;
  private readonly setTimer: SetTimer;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly hooks: StreamHooks,
    private readonly options: StreamManagerOptions = {},
  ) {
    this.lingerMs = options.lingerMs ?? LINGER_MS;
    this.setTimer = options.setTimer ?? realTimer;
  }

  get(desktopId: string): DesktopStream | undefined {
    return this.entries.get(desktopId)?.stream;
  }

  /**
   * Get (or open) the stream of a desktop and hold a reference to it; give it back with
   * release(desktopId, stream). `limits` apply when this call opens the connection.
   * Rejects with an RfbError when the desktop cannot be reached or refuses.
   */
  async acquire(
    desktopId: string,
    endpoint: RfbEndpoint,
    limits: RfbLimits = DEFAULT_RFB_LIMITS,
  ): Promise<DesktopStream> {
    let e = this.entries.get(desktopId);
    if (e && !sameEndpoint(e.endpoint, endpoint)) {
      // the desktop was restarted somewhere else: drop the old connection
      this.drop(desktopId, 'desktop moved');
      e = undefined;
    }
    if (!e) e = this.open(desktopId, endpoint, limits);
    e.refs++;
    e.linger?.cancel();
    e.linger = undefined;
    try {
      const stream = await e.ready;
      // a link can fail right after its first frame (in the same read): do not hand it out
      if (this.entries.get(desktopId) !== e)
        throw e.closed ?? new RfbError('server-closed', 'the desktop link closed while opening');
      return stream;
    } catch (err) {
      this.releaseEntry(desktopId, e);
      throw err;
    }
  }

  /** Give back a reference taken by acquire(); a stale one (of a replaced connection) is a no-op. */
  release(desktopId: string, stream: DesktopStream): void {
    const e = this.entries.get(desktopId);
    if (e?.stream === stream) this.releaseEntry(desktopId, e);
  }

  private releaseEntry(desktopId: string, e: Entry): void {
    e.refs = Math.max(0, e.refs - 1);
    if (e.refs > 0 || e.linger || this.entries.get(desktopId) !== e) return;
    e.linger = this.setTimer(() => {
      e.linger = undefined;
      // this connection only: the desktop may have another one by now
      if (e.refs === 0 && this.entries.get(desktopId) === e) this.drop(desktopId, 'no viewers');
    }, this.lingerMs);
  }

  /** Close a desktop's connection now (desktop stopped or reset). */
  drop(desktopId: string, reason: string): void {
    const e = this.entries.get(desktopId);
    if (!e) return;
    this.entries.delete(desktopId);
    e.linger?.cancel();
    e.linger = undefined;
    e.client?.close(reason);
  }

  closeAll(): void {
    for (const id of [...this.entries.keys()]) this.drop(id, 'server shutting down');
  }

  /** A small JPEG of a desktop, opening a short-lived connection when nobody is watching. */
  async thumbnail(desktopId: string, endpoint: RfbEndpoint, limits?: RfbLimits): Promise<Buffer> {
    const stream = await this.acquire(desktopId, endpoint, limits);
    try {
      return await stream.thumbnail();
    } finally {
      this.release(desktopId, stream);
    }
  }

  /**
   * A live migration of a desktop is about to switch: open a second link to `endpoint` (the
   * destination's display) and draw it aside. Undefined when nobody watches the desktop
   * here (the next viewer opens its link at the new endpoint). Rejects with an RfbError
   * when the destination's display does not answer.
   */
  async prepareMove(desktopId: string, endpoint: RfbEndpoint): Promise<LinkMove | undefined> {
    const e = this.entries.get(desktopId);
    if (!e?.client) return undefined;
    await e.ready.catch(() => undefined);
    if (this.entries.get(desktopId) !== e) return undefined;
    const log = this.log.child({ desktopId, move: true });
    const staging = new StagingSink();
    const client = this.client(endpoint, staging, e.limits, log);
    client.on('error', (err: Error) => log.warn({ err }, 'RFB error on the destination link'));
    const connectTimeoutMs = this.options.rfb?.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    try {
      await client.connect();
      if (staging.screens === 0)
        await withTimeout(staging.nextScreen(), connectTimeoutMs, "the destination's first screen");
    } catch (err) {
      client.close('move abandoned');
      throw err;
    }
    e.moving = true;
    const stream = e.stream;
    let settled = false;
    const endMove = () => {
      settled = true;
      e.moving = false;
    };
    return {
      holdInput: async () => {
        stream.holdInput();
        // what was written before the hold reaches the source before it may pause
        const deadline = Date.now() + DRAIN_MS;
        while ((e.client?.sendBuffered ?? 0) > 0 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
      },
      switchOver: async () => {
        if (settled) throw new RfbError('closed', 'the move already ended');
        // The destination's whole screen as it is now that it runs: the answer to this
        // request, an update drawing every pixel. Not just the next update to end: QEMU
        // answers at once with the cursor shape alone, and draws the migrated guest's screen
        // (until then its "display not initialized" placeholder, often of another size) at
        // its next display refresh, when the pixels go out.
        const asked = Date.now();
        // The destination runs the guest now: input goes to it from here on, the held input
        // first. Any input message also brings QEMU's display refresh back to its shortest
        // period (it grew up to seconds while the destination waited for the state), so the
        // screen asked for below comes in tens of ms instead of hundreds. Without held input,
        // the last pointer event is said again (the same place and buttons: nothing moves).
        stream.connected(client);
        const released = stream.releaseInput(this.setTimer);
        if (released === 0) stream.repeatPointer();
        const screen = staging.nextScreen();
        client.requestFullUpdate();
        await withTimeout(screen, SWITCH_UPDATE_MS, "the destination's screen").catch(
          (err: unknown) =>
            log.warn({ err }, 'switching without a fresh screen from the destination'),
        );
        const screenMs = Date.now() - asked;
        endMove();
        const old = e.client;
        e.client = client;
        e.endpoint = endpoint;
        e.closed = undefined;
        e.closedWhileMoving = undefined;
        const changedPixels = stream.adoptFramebuffer(staging.fb, staging.width, staging.height);
        staging.forwardTo(stream);
        stream.detectMoves(!(client.info?.continuousUpdates ?? false));
        this.watch(desktopId, e, client, this.log.child({ desktopId }));
        old?.close('desktop moved');
        log.info(
          { changedPixels, releasedInput: released, screenMs },
          'desktop link moved to the destination',
        );
        return { changedPixels };
      },
      abort: (reason: string) => {
        if (settled) return;
        endMove();
        client.close(`move abandoned: ${reason}`);
        stream.releaseInput(this.setTimer);
        const lost = e.closedWhileMoving;
        e.closedWhileMoving = undefined;
        if (lost && this.entries.get(desktopId) === e) {
          this.entries.delete(desktopId);
          this.hooks.lost(desktopId, lost.reason, lost.error);
        }
      },
    };
  }

  private client(
    endpoint: RfbEndpoint,
    sink: RfbClientOptions['sink'],
    limits: RfbLimits,
    log: Logger,
  ): RfbClient {
    const rfb = this.options.rfb ?? {};
    return new RfbClient({
      endpoint,
      sink,
      logger: log,
      limits,
      ...rfb,
      connectTimeoutMs: rfb.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      // room for the largest clipboard the pool lets a viewer paste, and some input after it
      sendBufferBytes: Math.max(
        rfb.sendBufferBytes ?? DEFAULT_SEND_BUFFER_BYTES,
        limits.maxCutText + 64 * 1024,
      ),
    });
  }

  /** A link of this entry closing: a loss, unless we closed it or the desktop is moving. */
  private watch(desktopId: string, entry: Entry, client: RfbClient, log: Logger): void {
    client.on('close', (info) => {
      if (entry.client !== client) return; // a link the entry no longer uses
      entry.closed = info.error ?? new RfbError('closed', info.reason);
      if (entry.moving) {
        // the source stops at the switch: not a loss unless the move is abandoned
        entry.closedWhileMoving = info;
        return;
      }
      entry.linger?.cancel();
      entry.linger = undefined;
      if (this.entries.get(desktopId) !== entry) return; // we closed it on purpose
      this.entries.delete(desktopId);
      log.warn({ reason: info.reason }, 'RFB connection to desktop lost');
      this.hooks.lost(desktopId, info.reason, info.error);
    });
    client.on('error', (err: Error) => log.warn({ err }, 'RFB error'));
  }

  private open(desktopId: string, endpoint: RfbEndpoint, limits: RfbLimits): Entry {
    const log = this.log.child({ desktopId });
    const stream = new DesktopStream(desktopId, this.clock, log, {
      cursor: (shape) => this.hooks.cursor(desktopId, shape),
      clipboard: (text) => this.hooks.clipboard(desktopId, text),
      clipboardDropped: (length, limit) => this.hooks.clipboardDropped?.(desktopId, length, limit),
    });
    const entry: Entry = {
      stream,
      client: undefined,
      refs: 0,
      linger: undefined,
      endpoint,
      closed: undefined,
      limits,
      moving: false,
      closedWhileMoving: undefined,
      ready: undefined as unknown as Promise<DesktopStream>,
    };
    const connectTimeoutMs = this.options.rfb?.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    entry.ready = (async () => {
      const client = this.client(endpoint, stream, limits, log);
      entry.client = client;
      this.watch(desktopId, entry, client, log);
      const info = await client.connect();
      // servers without continuous updates (QEMU) send no CopyRect either: find moves ourselves
      stream.detectMoves(!info.continuousUpdates);
      stream.connected(client);
      await withTimeout(stream.whenFirstUpdate(), connectTimeoutMs, 'first framebuffer update');
      return stream;
    })();
    entry.ready.catch(() => {
      if (this.entries.get(desktopId) === entry) this.drop(desktopId, 'connect failed');
    });
    this.entries.set(desktopId, entry);
    return entry;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new RfbError('connect-timeout', `timed out waiting for ${what}`)),
      ms,
    );
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
