import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import { viewerReason } from '../rfb/errors.js';
import type { StreamHooks, StreamManager } from '../stream/stream-manager.js';
import type { Attachments } from './attachments.js';
import type { ClipboardOut } from './clipboard-out.js';
import { fail, rooms, type VdiServer } from './viewer-socket.js';

export interface DesktopEventsDeps {
  io: VdiServer;
  broker: Broker;
  log: Logger;
  /** read when an event comes, after the gateway has built it */
  attachments: () => Attachments;
  clipboardOut: ClipboardOut;
}

/** What a desktop's stream reports, passed on to the viewers attached to it on this node. */
export function streamHooks(d: DesktopEventsDeps): StreamHooks {
  const { io, log } = d;
  return {
    cursor: (desktopId, shape) => {
      io.to(rooms.desktop(desktopId)).emit('cursor', {
        width: shape.width,
        height: shape.height,
        hotX: shape.hotX,
        hotY: shape.hotY,
        png: shape.png,
      });
    },
    clipboard: (desktopId, text) => {
      // only the session's own viewers get the desktop's clipboard, never shadows
      const a = d.attachments();
      for (const s of a.ofDesktop(desktopId)) if (!a.of(s)!.shadow) d.clipboardOut.send(s, text);
    },
    clipboardDropped: (desktopId, length, limit) => {
      const a = d.attachments();
      for (const s of a.ofDesktop(desktopId))
        if (!a.of(s)!.shadow)
          fail(
            s,
            'CLIPBOARD_TOO_LARGE',
            `the desktop's clipboard (${length} bytes) is larger than this pool allows (${limit} bytes); it was not copied`,
          );
    },
    lost: (desktopId, detail, error) => {
      // the viewer hears our words for it, never the server's (they are in the log)
      const reason = error ? viewerReason(error).message : 'the connection to the desktop closed';
      log.info({ desktopId, detail }, 'desktop link lost; viewers told');
      io.to(rooms.desktop(desktopId)).emit('session', { state: 'desktop-lost', reason });
      // they stay in their session's room: if the desktop is gone for good, the session
      // ends and they hear why (a crashed VM shows first as a lost VNC connection);
      // if it is still there, they attach again by themselves
      const a = d.attachments();
      for (const s of a.ofDesktop(desktopId)) a.waitForDesktop(s, 'desktop connection lost');
      void d.broker.checkDesktopsSoon([desktopId]);
    },
  };
}

/**
 * What the broker decides about sessions and desktops, told to their viewers. Room
 * operations reach sockets on every node (with the Redis adapter), not only this one.
 */
export function relayBrokerEvents(d: DesktopEventsDeps, streams: StreamManager): void {
  const { io, broker } = d;
  broker.on('session-ended', (sessionId, reason) => {
    io.to(rooms.session(sessionId)).emit('session', { state: 'ended', reason });
    io.in(rooms.session(sessionId)).disconnectSockets(true);
  });
  broker.on('session-warning', (sessionId, kind, inMs) => {
    // the user's viewers only: a shadowing administrator is not the one to act on it
    io.to(rooms.viewers(sessionId)).emit('warning', { kind, inMs: Math.round(inMs) });
  });
  broker.on('session-disconnect', (sessionId) => {
    io.in(rooms.viewers(sessionId)).disconnectSockets(true);
  });
  broker.on('desktop-health', (desktopId, state, reason) => {
    const msg =
      state === 'running'
        ? { state: 'active' as const }
        : {
            state: state === 'dead' ? ('desktop-lost' as const) : ('desktop-unresponsive' as const),
            ...(reason ? { reason } : {}),
          };
    io.to(rooms.desktop(desktopId)).emit('session', msg);
  });
  broker.on('desktop-restarting', (desktopId) => {
    // this node's viewers let go of the old stream and attach again (with backoff) once the
    // desktop is back; other nodes lose their RFB connection to it and do the same via `lost`
    const a = d.attachments();
    const sockets = a.ofDesktop(desktopId);
    streams.drop(desktopId, 'desktop restarting');
    for (const s of sockets) a.waitForDesktop(s, 'desktop restarted');
  });
}
