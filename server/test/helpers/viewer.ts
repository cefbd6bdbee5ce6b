/**
 * Socket.IO viewers as the browser client opens them (our binary parser, WebSocket only, the
 * sign-in cookie in the handshake), for tests that drive the gateway without a browser.
 */
import { io, type Socket } from 'socket.io-client';
import {
  decodeFrame,
  FrameFlags,
  vdiParser,
  type AttachResult,
  type ClientToServerEvents,
  type ErrorResult,
  type ServerToClientEvents,
  type SessionStatusMsg,
} from '@vdi/shared';

export type ViewerSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** an attach starts the desktop's RFB link when it has none yet */
const ATTACH_TIMEOUT_MS = 15_000;

/** Resolves once the socket has connected; rejects with the handshake's refusal. */
export function connected(s: Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', reject);
  });
}

/** Resolves with the reason once the socket has disconnected. */
export function disconnected(s: Socket): Promise<string> {
  return new Promise((resolve) => s.once('disconnect', resolve));
}

/**
 * Sends an attach request (of any shape: tests send bad ones too) and resolves with the
 * answer; with `timeoutMs`, rejects when none comes in time.
 */
export function attach(
  s: Socket,
  req: unknown,
  timeoutMs?: number,
): Promise<AttachResult | ErrorResult> {
  const sender = timeoutMs === undefined ? s : s.timeout(timeoutMs);
  return sender.emitWithAck('attach', req) as Promise<AttachResult | ErrorResult>;
}

/** A frame as a test viewer keeps it: the header, not the pixels. */
export interface ReceivedFrame {
  seq: number;
  keyframe: boolean;
  width: number;
  height: number;
  /** size of the frame on the wire */
  bytes: number;
  /** Date.now() when it arrived */
  at: number;
}

/**
 * Records each frame the socket receives and, as the browser does once it has drawn one,
 * acknowledges it; with `ack: false` the viewer stalls (the server stops after its in-flight
 * budget).
 */
export function receiveFrames(s: ViewerSocket, { ack = true } = {}): ReceivedFrame[] {
  const frames: ReceivedFrame[] = [];
  const record = (buf: ArrayBuffer | Uint8Array) => {
    const f = decodeFrame(new Uint8Array(buf));
    frames.push({
      seq: f.seq,
      keyframe: (f.flags & FrameFlags.Keyframe) !== 0,
      width: f.fbWidth,
      height: f.fbHeight,
      bytes: buf.byteLength,
      at: Date.now(),
    });
    if (ack) s.emit('ack', { seq: f.seq });
  };
  // a keyframe that overtook the attach answer (Viewers.attached kept it), then the rest
  for (const buf of early.get(s)?.splice(0) ?? []) record(buf);
  early.delete(s);
  s.on('frame', record);
  return frames;
}

/**
 * Frames that arrived while Viewers.attached waited for the attach answer: the first keyframe
 * may overtake it (the browser counts frames from the moment attach is sent, connection.ts),
 * and the test's receiveFrames, called after, would otherwise never see or acknowledge it.
 */
const early = new WeakMap<ViewerSocket, (ArrayBuffer | Uint8Array)[]>();

export interface AttachedViewer {
  socket: ViewerSocket;
  /** what the server said about the session, in order */
  statuses: SessionStatusMsg[];
  /** resolves with the reason once the socket has disconnected */
  closed: Promise<string>;
}

/** The viewer sockets a test file opens, so that its afterAll closes them all. */
export class Viewers {
  private readonly sockets: Socket[] = [];

  /** A socket not yet connected; `headers` go into the handshake (cookie, origin). */
  open(url: string, headers: Record<string, string> = {}): ViewerSocket {
    const s: ViewerSocket = io(url, {
      parser: vdiParser,
      transports: ['websocket'],
      extraHeaders: headers,
      reconnection: false,
      forceNew: true,
    });
    this.sockets.push(s);
    return s;
  }

  /** A viewer signed in with `cookie`, attached to the session; throws unless attach succeeds. */
  async attached(url: string, cookie: string, sessionId: string): Promise<AttachedViewer> {
    const socket = this.open(url, { cookie });
    const statuses: SessionStatusMsg[] = [];
    socket.on('session', (m) => statuses.push(m));
    const closed = disconnected(socket);
    await connected(socket);
    const kept: (ArrayBuffer | Uint8Array)[] = [];
    early.set(socket, kept);
    const keep = (buf: ArrayBuffer | Uint8Array) => kept.push(buf);
    socket.on('frame', keep);
    const r = await attach(socket, { sessionId }, ATTACH_TIMEOUT_MS).finally(() =>
      socket.off('frame', keep),
    );
    if (!r.ok) throw new Error(`attach failed: ${r.code} ${r.message}`);
    return { socket, statuses, closed };
  }

  closeAll(): void {
    for (const s of this.sockets.splice(0)) s.close();
  }
}
