import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { RfbEndpoint } from '../providers/types.js';
import { RfbClient } from '../rfb/client.js';
import { DesktopStream, type CursorShape } from './desktop-stream.js';

export interface StreamHooks {
  cursor(desktopId: string, shape: CursorShape): void;
  clipboard(desktopId: string, text: string): void;
  /** the RFB connection to a desktop closed unexpectedly (viewers are told; the broker checks health) */
  lost(desktopId: string, reason: string): void;
}

interface Entry {
  stream: DesktopStream;
  client: RfbClient | undefined;
  refs: number;
  ready: Promise<DesktopStream>;
  linger: NodeJS.Timeout | undefined;
  endpoint: RfbEndpoint;
}

/** Keep a desktop's RFB connection this long after its last viewer leaves, ms. */
export const LINGER_MS = 15_000;
/** Give up connecting to a desktop after this long, ms. */
const CONNECT_TIMEOUT_MS = 10_000;

/** How RFB links to desktops are opened and watched (tests shorten them). */
export interface StreamLinkOptions {
  /** from connect to the first framebuffer update, ms @default 10_000 */
  connectTimeoutMs?: number;
  /** silence before a keepalive fence, and as long again before the link is dropped, ms @default the RFB client's */
  keepaliveMs?: number;
}

/**
 * One RFB connection and mirror per desktop, shared by all its viewers (and by thumbnails).
 * Opened on first use, closed a while after the last viewer leaves.
 */
export class StreamManager {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly hooks: StreamHooks,
  ) {}

  /** timings of the links opened from now on */
  linkOptions: StreamLinkOptions = {};

  get(desktopId: string): DesktopStream | undefined {
    return this.entries.get(desktopId)?.stream;
  }

  /** Get (or open) the stream of a desktop and hold a reference to it. */
  async acquire(desktopId: string, endpoint: RfbEndpoint): Promise<DesktopStream> {
    let e = this.entries.get(desktopId);
    if (e && !sameEndpoint(e.endpoint, endpoint)) {
      // the desktop was restarted somewhere else: drop the old connection
      this.drop(desktopId, 'desktop moved');
      e = undefined;
    }
    if (!e) e = this.open(desktopId, endpoint);
    e.refs++;
    if (e.linger) {
      clearTimeout(e.linger);
      e.linger = undefined;
    }
    try {
      return await e.ready;
    } catch (err) {
      this.release(desktopId);
      throw err;
    }
  }

  release(desktopId: string): void {
    const e = this.entries.get(desktopId);
    if (!e) return;
    e.refs = Math.max(0, e.refs - 1);
    if (e.refs === 0 && !e.linger) {
      e.linger = setTimeout(() => {
        if (e.refs === 0) this.drop(desktopId, 'no viewers');
      }, LINGER_MS);
      e.linger.unref();
    }
  }

  /** Close a desktop's connection now (desktop stopped or reset). */
  drop(desktopId: string, reason: string): void {
    const e = this.entries.get(desktopId);
    if (!e) return;
    this.entries.delete(desktopId);
    if (e.linger) clearTimeout(e.linger);
    e.client?.close(reason);
  }

  closeAll(): void {
    for (const id of [...this.entries.keys()]) this.drop(id, 'server shutting down');
  }

  /** A small JPEG of a desktop, opening a short-lived connection when nobody is watching. */
  async thumbnail(desktopId: string, endpoint: RfbEndpoint): Promise<Buffer> {
    const stream = await this.acquire(desktopId, endpoint);
    try {
      return await stream.thumbnail();
    } finally {
      this.release(desktopId);
    }
  }

  private open(desktopId: string, endpoint: RfbEndpoint): Entry {
    const log = this.log.child({ desktopId });
    const stream = new DesktopStream(desktopId, this.clock, log, {
      cursor: (shape) => this.hooks.cursor(desktopId, shape),
      clipboard: (text) => this.hooks.clipboard(desktopId, text),
    });
    const entry: Entry = {
      stream,
      client: undefined,
      refs: 0,
      linger: undefined,
      endpoint,
      ready: undefined as unknown as Promise<DesktopStream>,
    };
    entry.ready = (async () => {
      const connectTimeoutMs = this.linkOptions.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
      const client = new RfbClient({
        endpoint,
        sink: stream,
        logger: log,
        connectTimeoutMs,
        ...(this.linkOptions.keepaliveMs !== undefined
          ? { keepaliveMs: this.linkOptions.keepaliveMs }
          : {}),
      });
      entry.client = client;
      client.on('close', (info: { reason: string }) => {
        if (this.entries.get(desktopId) !== entry) return; // we closed it on purpose
        this.entries.delete(desktopId);
        log.warn({ reason: info.reason }, 'RFB connection to desktop lost');
        this.hooks.lost(desktopId, info.reason);
      });
      client.on('error', (err: Error) => log.warn({ err }, 'RFB error'));
      const info = await client.connect();
      // servers without continuous updates (QEMU) send no CopyRect either: find moves ourselves
      stream.detectMoves(!info.continuousUpdates);
      stream.link = client;
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

function sameEndpoint(a: RfbEndpoint, b: RfbEndpoint): boolean {
  return a.kind === 'unix'
    ? b.kind === 'unix' && a.path === b.path
    : b.kind === 'tcp' && a.host === b.host && a.port === b.port;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
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
