import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AttachResult, ErrorResult } from '@vdi/shared';
import {
  ATTACH_TIMEOUT_MS,
  ViewerConnection,
  type ConnectionListener,
  type ViewerSocket,
  type ViewerState,
} from '../src/viewer/connection';

type Handler = (...args: unknown[]) => void;
type AttachCallback = (err: Error | null, res: AttachResult | ErrorResult) => void;

/**
 * Just enough of a socket.io-client Socket. Unlike the real one, emit while disconnected
 * is recorded as "buffered" so a test can prove nothing would be replayed on reconnect.
 */
class FakeSocket {
  connected = false;
  active = false;
  emitted: Array<[string, unknown]> = [];
  buffered: Array<[string, unknown]> = [];
  attaches: Array<{ req: unknown; cb: AttachCallback }> = [];
  private handlers = new Map<string, Handler[]>();
  private ioHandlers = new Map<string, Handler[]>();
  engineClosed = 0;
  io = {
    on: (event: string, fn: Handler) => void this.add(this.ioHandlers, event, fn),
    // closing the engine looks to the socket like a dropped transport
    engine: {
      close: () => {
        this.engineClosed++;
        this.drop('forced close');
      },
    },
  };

  on(event: string, fn: Handler): this {
    this.add(this.handlers, event, fn);
    return this;
  }
  connect(): this {
    this.active = true;
    return this;
  }
  disconnect(): this {
    const was = this.connected;
    this.connected = false;
    this.active = false;
    if (was) this.fire('disconnect', 'io client disconnect');
    return this;
  }
  timeout(_ms: number) {
    return {
      emit: (event: string, req: unknown, cb: AttachCallback) => {
        this.emitted.push([event, req]);
        this.attaches.push({ req, cb });
      },
    };
  }
  emit(event: string, msg?: unknown): this {
    (this.connected ? this.emitted : this.buffered).push([event, msg]);
    return this;
  }

  // ── test drivers ──
  serverAccepts(): void {
    this.connected = true;
    this.active = true;
    this.fire('connect');
  }
  drop(reason = 'transport close'): void {
    this.connected = false;
    this.fire('disconnect', reason);
  }
  fire(event: string, ...args: unknown[]): void {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }
  fireIo(event: string, ...args: unknown[]): void {
    for (const fn of this.ioHandlers.get(event) ?? []) fn(...args);
  }
  answerAttach(res: AttachResult | ErrorResult, index = this.attaches.length - 1): void {
    this.attaches[index]!.cb(null, res);
  }
  sent(event: string): unknown[] {
    return this.emitted.filter(([e]) => e === event).map(([, m]) => m);
  }
  private add(map: Map<string, Handler[]>, event: string, fn: Handler): void {
    map.set(event, [...(map.get(event) ?? []), fn]);
  }
}

const OK: AttachResult = {
  ok: true,
  sessionId: 's1',
  desktopId: 'd1',
  width: 1280,
  height: 800,
  viewOnly: false,
  name: 'Desk 1',
  resize: {
    allowed: true,
    fitByDefault: true,
    minWidth: 640,
    minHeight: 480,
    maxWidth: 4096,
    maxHeight: 4096,
  },
  sound: true,
};

const TIMINGS = { pingAfterMs: 1000, unstableMs: 3000, lostMs: 15_000 };

function setup(shadow = false, opts: ConstructorParameters<typeof ViewerConnection>[3] = {}) {
  const socket = new FakeSocket();
  const states: Array<[ViewerState, string | undefined]> = [];
  const events: string[] = [];
  const listener: ConnectionListener = {
    state: (s, d) => void states.push([s, d.message ?? d.code]),
    attached: (res) => void events.push(`attached ${res.desktopId}`),
    detached: () => void events.push('detached'),
    frame: (data) => void events.push(`frame ${data.byteLength}`),
    cursor: () => {},
    clipboard: (text) => void events.push(`clipboard ${text}`),
    session: (msg) => void events.push(`session ${msg.state}`),
    notice: () => {},
    shadow: () => {},
    warning: (msg) => void events.push(`warning ${msg.kind} ${msg.inMs}`),
    unauthorized: () => void events.push('unauthorized'),
  };
  const conn = new ViewerConnection(
    socket as unknown as ViewerSocket,
    shadow ? { sessionId: 's1', shadow: true } : { sessionId: 's1' },
    listener,
    opts,
  );
  conn.start();
  return { socket, conn, states, events, last: () => states.at(-1)?.[0] };
}

describe('ViewerConnection: attach', () => {
  it('attaches on connect and on every reconnect', () => {
    const t = setup();
    expect(t.last()).toBe('connecting');
    t.socket.serverAccepts();
    expect(t.socket.attaches.map((a) => a.req)).toEqual([{ sessionId: 's1' }]);
    t.socket.answerAttach(OK);
    expect(t.last()).toBe('connected');

    t.socket.drop();
    expect(t.last()).toBe('reconnecting');
    t.socket.fireIo('reconnect_attempt', 2);
    expect(t.states.at(-1)).toEqual(['reconnecting', undefined]);
    t.socket.serverAccepts();
    expect(t.socket.attaches).toHaveLength(2);
    expect(t.last()).toBe('reconnecting'); // not before the server says yes
    t.socket.answerAttach(OK);
    expect(t.last()).toBe('connected');
    expect(t.events.filter((e) => e.startsWith('attached'))).toHaveLength(2);
  });

  it('sends shadow: true for a view-only attach', () => {
    const t = setup(true);
    t.socket.serverAccepts();
    expect(t.socket.attaches[0]!.req).toEqual({ sessionId: 's1', shadow: true });
  });

  it('SESSION_ENDED ends the viewer for good', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach({ ok: false, code: 'SESSION_ENDED', message: 'logged off by admin' });
    expect(t.states.at(-1)).toEqual(['ended', 'logged off by admin']);
    expect(t.socket.connected).toBe(false);
    expect(t.socket.active).toBe(false);
  });

  it('a session "ended" event ends the viewer', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('session', { state: 'ended', reason: 'idle timeout' });
    expect(t.states.at(-1)).toEqual(['ended', 'idle timeout']);
    expect(t.socket.active).toBe(false);
  });

  it('ignores a late attach answer from a previous connection', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.drop();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK, 0); // answer to the first attempt arrives now
    expect(t.last()).toBe('connecting');
    t.socket.answerAttach(OK, 1);
    expect(t.last()).toBe('connected');
  });

  it('an attach timeout drops the connection and tries again', () => {
    vi.useFakeTimers();
    try {
      const t = setup();
      t.socket.serverAccepts();
      t.socket.attaches[0]!.cb(
        new Error('operation has timed out'),
        undefined as unknown as AttachResult,
      );
      expect(t.last()).toBe('connecting');
      expect(t.socket.connected).toBe(false);
      vi.advanceTimersByTime(ATTACH_TIMEOUT_MS);
      expect(t.socket.active).toBe(true); // connect() called again
    } finally {
      vi.useRealTimers();
    }
  });

  it('a server-side disconnect waits for the user instead of reconnecting', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('session', { state: 'disconnected', reason: 'disconnected by an administrator' });
    t.socket.drop('io server disconnect');
    expect(t.states.at(-1)).toEqual(['disconnected', 'disconnected by an administrator']);
    t.conn.reconnect();
    expect(t.last()).toBe('reconnecting');
    expect(t.socket.active).toBe(true);
  });

  it('a handshake refused as unauthorized asks for sign-in', () => {
    const t = setup();
    t.socket.active = false; // refused by middleware: Socket.IO will not retry
    t.socket.fire('connect_error', new Error('UNAUTHORIZED'));
    expect(t.events).toContain('unauthorized');
  });

  it('passes desktop health on and ends nothing for it', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('session', { state: 'desktop-unresponsive' });
    expect(t.events).toContain('session desktop-unresponsive');
    expect(t.last()).toBe('connected');
  });
});

describe('ViewerConnection: input is never buffered across a disconnect', () => {
  let t: ReturnType<typeof setup>;
  beforeEach(() => {
    t = setup();
  });
  afterEach(() => {
    expect(t.socket.buffered).toEqual([]);
  });

  it('drops input before the attach answer', () => {
    t.socket.serverAccepts();
    expect(t.conn.key(0x61, true)).toBe(false);
    expect(t.conn.pointer(1, 2, 0)).toBe(false);
    expect(t.socket.sent('key')).toEqual([]);
  });

  it('sends input while attached', () => {
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    expect(t.conn.key(0x61, true)).toBe(true);
    expect(t.conn.pointer(10, 20, 1)).toBe(true);
    expect(t.conn.clipboard('hi')).toBe(true);
    expect(t.socket.sent('key')).toEqual([{ keysym: 0x61, down: true }]);
    expect(t.socket.sent('pointer')).toEqual([{ x: 10, y: 20, buttons: 1 }]);
    expect(t.socket.sent('clipboard')).toEqual([{ text: 'hi' }]);
  });

  it('drops input while disconnected and after reconnecting until re-attached', () => {
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.drop();
    expect(t.conn.key(0x61, true)).toBe(false);
    expect(t.conn.pointer(1, 1, 1)).toBe(false);
    t.conn.ack(3, 5);
    t.socket.serverAccepts();
    expect(t.conn.key(0x61, false)).toBe(false);
    t.socket.answerAttach(OK);
    expect(t.socket.sent('key')).toEqual([]);
    expect(t.socket.sent('ack')).toEqual([]);
    expect(t.events).toContain('detached');
  });

  it('never sends input when view-only', () => {
    t.socket.serverAccepts();
    t.socket.answerAttach({ ...OK, viewOnly: true });
    expect(t.conn.key(0x61, true)).toBe(false);
    expect(t.conn.pointer(1, 1, 0)).toBe(false);
    expect(t.conn.interactive).toBe(false);
  });

  it('accepts frames that overtake the attach answer, and acks them while connected', () => {
    t.socket.serverAccepts();
    t.socket.fire('frame', new ArrayBuffer(40));
    expect(t.events).toContain('frame 40');
    t.conn.ack(1, 3.14159);
    expect(t.socket.sent('ack')).toEqual([{ seq: 1, renderMs: 3.1 }]);
  });
});

describe('ViewerConnection: ended from the page', () => {
  it('Log off ends the viewer once, whichever of the HTTP answer and the server event comes first', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('session', { state: 'ended', reason: 'logged off' });
    t.conn.ended('You logged off.');
    expect(t.states.filter(([s]) => s === 'ended')).toEqual([['ended', 'logged off']]);

    const u = setup();
    u.socket.serverAccepts();
    u.socket.answerAttach(OK);
    u.socket.drop('io server disconnect');
    u.conn.ended('You logged off.');
    expect(u.states.at(-1)).toEqual(['ended', 'You logged off.']);
    expect(u.socket.active).toBe(false);
  });
});

describe('ViewerConnection: liveness (app-level heartbeat)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const connected = () => {
    const t = setup(false, { heartbeat: TIMINGS, now: () => Date.now() });
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    expect(t.last()).toBe('connected');
    return t;
  };

  it('sends a heartbeat after a second of silence, not while the server is heard', () => {
    const t = connected();
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(400);
      t.socket.fireIo('packet', { type: 2 });
    }
    expect(t.socket.sent('heartbeat')).toHaveLength(0);
    vi.advanceTimersByTime(TIMINGS.pingAfterMs + 500);
    expect(t.socket.sent('heartbeat')).toHaveLength(1);
    // its answer arrives: heard, no second heartbeat for another second
    (t.socket.sent('heartbeat')[0] as () => void)();
    vi.advanceTimersByTime(500);
    expect(t.socket.sent('heartbeat')).toHaveLength(1);
  });

  it('says unstable after 3 s of silence and connected again when traffic flows', () => {
    const t = connected();
    vi.advanceTimersByTime(TIMINGS.unstableMs - 600);
    expect(t.last()).toBe('connected');
    vi.advanceTimersByTime(1000);
    expect(t.states.at(-1)).toEqual(['unstable', 'Connection unstable. Waiting for the network…']);
    // still attached: the picture stays and nothing was detached
    expect(t.events).not.toContain('detached');
    expect(t.conn.interactive).toBe(true);
    // heartbeats went out once a second meanwhile
    expect(t.socket.sent('heartbeat').length).toBeGreaterThanOrEqual(2);
    t.socket.fireIo('ping');
    expect(t.last()).toBe('connected');
    expect(t.socket.engineClosed).toBe(0);
  });

  it('gives the connection up after 15 s of silence and reconnects by itself', () => {
    const t = connected();
    vi.advanceTimersByTime(TIMINGS.lostMs - 600);
    expect(t.last()).toBe('unstable');
    expect(t.socket.engineClosed).toBe(0);
    vi.advanceTimersByTime(1000);
    expect(t.socket.engineClosed).toBe(1);
    expect(t.last()).toBe('reconnecting');
    expect(t.events.at(-1)).toBe('detached');
    // the next connection attaches afresh and the clock starts over
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    expect(t.last()).toBe('connected');
    vi.advanceTimersByTime(TIMINGS.unstableMs - 600);
    expect(t.last()).toBe('connected');
  });

  it('checks nothing once closed', () => {
    const t = connected();
    t.conn.close();
    vi.advanceTimersByTime(TIMINGS.lostMs * 2);
    expect(t.socket.sent('heartbeat')).toHaveLength(0);
    expect(t.socket.engineClosed).toBe(0);
  });
});

describe('ViewerConnection: the server restarts', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('lets go, says the server is restarting, and reconnects by itself after the asked wait', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('server', { state: 'restarting', retryAfterMs: 1800 });
    expect(t.states.at(-1)).toEqual([
      'reconnecting',
      'The server is restarting. Reconnecting by itself…',
    ]);
    expect(t.socket.connected).toBe(false);
    expect(t.socket.active).toBe(false);
    expect(t.conn.interactive).toBe(false);
    vi.advanceTimersByTime(1700);
    expect(t.socket.active).toBe(false);
    vi.advanceTimersByTime(200);
    expect(t.socket.active).toBe(true); // connect() called; Socket.IO's backoff goes on from here
    // while the server is still away, the message stays
    t.socket.fire('connect_error', new Error('xhr poll error'));
    expect(t.states.at(-1)).toEqual([
      'reconnecting',
      'The server is restarting. Reconnecting by itself…',
    ]);
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    expect(t.last()).toBe('connected');
    // a later transport failure is an ordinary one again
    t.socket.drop();
    t.socket.fire('connect_error', new Error('xhr poll error'));
    expect(t.states.at(-1)).toEqual(['reconnecting', 'Cannot reach the server.']);
  });

  it('caps an absurd wait and ignores malformed server events', () => {
    const t = setup();
    t.socket.serverAccepts();
    t.socket.answerAttach(OK);
    t.socket.fire('server', { state: 'exploding' });
    t.socket.fire('server', undefined);
    expect(t.last()).toBe('connected');
    t.socket.fire('server', { state: 'restarting', retryAfterMs: 1e12 });
    vi.advanceTimersByTime(30_000);
    expect(t.socket.active).toBe(true);
  });
});
