import type { Clock } from '../clock.js';
import type { AuthedUser } from '../auth/index.js';
import { fullBuckets, type InputRates } from './input-budget.js';
import type { VdiSocket } from './viewer-socket.js';

/**
 * May a browser on `origin` open a socket to `host`? The same host always may, and the
 * configured extra origins. No Origin header: not a browser, so no ambient cookie to abuse
 * (cross-site WebSocket hijacking needs a browser).
 */
export function originAllowed(
  origin: string | undefined,
  host: string | undefined,
  allowedOrigins: readonly string[],
): boolean {
  if (!origin) return true;
  try {
    const u = new URL(origin);
    if (host && u.host === host) return true;
    return allowedOrigins.includes(u.origin);
  } catch {
    return false;
  }
}

/**
 * Socket.IO middleware after the session middlewares: lets in only a signed-in browser
 * session (the same express-session cookie as the REST API), and gives the socket its data.
 */
export function authenticate(clock: Clock, rates: InputRates) {
  return (socket: VdiSocket, next: (err?: Error) => void): void => {
    const req = socket.request as typeof socket.request & {
      user?: AuthedUser;
      sessionID?: string;
    };
    if (!req.user) return next(new Error('unauthorized: sign in first'));
    socket.data.user = req.user;
    socket.data.httpSessionId = req.sessionID ?? '';
    socket.data.ip = socket.handshake.address;
    Object.assign(socket.data, fullBuckets(rates, clock.now()));
    next();
  };
}
