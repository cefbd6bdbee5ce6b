import type { Logger } from 'pino';
import type { z } from 'zod';
import { CLIENT_EVENT_NAMES, ClientEventSchemas } from '@vdi/shared';
import { gatewayMetrics } from './metrics.js';
import { fail, type VdiSocket } from './viewer-socket.js';

type CheckedEvent = {
  [E in keyof typeof ClientEventSchemas]: (typeof ClientEventSchemas)[E] extends null ? never : E;
}[keyof typeof ClientEventSchemas];

const KNOWN_EVENTS = new Set<string>(CLIENT_EVENT_NAMES);

/**
 * Validate one event's payload against its schema in shared/src/events.ts. A bad one is
 * logged, counted and answered with BAD_EVENT, and changes nothing.
 */
export function valid<E extends CheckedEvent>(
  socket: VdiSocket,
  log: Logger,
  event: E,
  payload: unknown,
): z.infer<(typeof ClientEventSchemas)[E]> | undefined {
  const r = ClientEventSchemas[event].safeParse(payload);
  if (r.success) return r.data as z.infer<(typeof ClientEventSchemas)[E]>;
  gatewayMetrics.badEvents.inc({ event });
  log.warn(
    { event, user: socket.data.user.username, issues: r.error.issues.slice(0, 3) },
    'bad event from browser',
  );
  fail(
    socket,
    'BAD_EVENT',
    `invalid ${event} event: ${r.error.issues[0]?.message ?? 'bad payload'}`,
  );
  return undefined;
}

/** Answer events that are not in ClientToServerEvents with UNKNOWN_EVENT. */
export function refuseUnknownEvents(socket: VdiSocket): void {
  socket.onAny((event: string) => {
    if (KNOWN_EVENTS.has(event)) return;
    gatewayMetrics.badEvents.inc({ event: 'unknown' });
    fail(socket, 'UNKNOWN_EVENT', `unknown event "${String(event).slice(0, 64)}"`);
  });
}
