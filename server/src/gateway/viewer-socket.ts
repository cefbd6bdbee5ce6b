import type { Server, Socket } from 'socket.io';
import type { ClientToServerEvents, ServerToClientEvents, VideoCodecFamily } from '@vdi/shared';
import type { AuthedUser } from '../auth/index.js';
import type { TokenBucket } from './input-budget.js';
import type { NodeMoveEvents } from './node-moves.js';

/** What travels with a socket. Plain data only: the Redis adapter serialises it across nodes. */
export interface SocketData {
  user: AuthedUser;
  httpSessionId: string;
  ip: string;
  /** token bucket for input events */
  bucket: TokenBucket;
  /** token bucket for input bytes (a few huge clipboard events must not pass for few events) */
  byteBucket: TokenBucket;
  /** the video codecs the browser said it decodes at its last attach */
  video?: VideoCodecFamily[];
}

export type VdiServer = Server<
  ClientToServerEvents,
  ServerToClientEvents,
  NodeMoveEvents,
  SocketData
>;

export type VdiSocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  NodeMoveEvents,
  SocketData
>;

/**
 * The Socket.IO rooms viewers are in. Emitting to a room or disconnecting it reaches the
 * sockets on every node (with the Redis adapter), not only this one.
 */
export const rooms = {
  /** everyone attached to a session, shadows included */
  session: (sessionId: string) => `session:${sessionId}`,
  /** the session's own viewers (no shadows), also while they wait to attach again */
  viewers: (sessionId: string) => `viewers:${sessionId}`,
  /** everyone attached to a desktop's stream */
  desktop: (desktopId: string) => `desktop:${desktopId}`,
  /** every socket of an account */
  user: (userId: string) => `user:${userId}`,
  /** every socket signed in with one browser session (cookie) */
  http: (httpSessionId: string) => `http:${httpSessionId}`,
} as const;

/** Tell a viewer what went wrong with what it sent (nothing changed because of it). */
export function fail(socket: VdiSocket, code: string, message: string): void {
  socket.emit('error', { code, message });
}
