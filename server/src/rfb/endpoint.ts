import net from 'node:net';
import type { Duplex } from 'node:stream';

/** What every endpoint may say besides where it is. */
interface EndpointCommon {
  password?: string;
  /**
   * The bytes cross a network (another host, a relay) rather than staying on this machine:
   * the client then asks for compressed encodings (ZRLE, Tight) before Raw. Local links
   * leave it unset: on loopback, compressing costs more CPU than the bytes it saves.
   */
  remote?: boolean;
}

/** Where an RFB client connects to reach a desktop's VNC server. */
export type RfbEndpoint =
  | (EndpointCommon & {
      kind: 'unix';
      path: string;
      /**
       * The account that must serve the socket. When set, the RFB client checks the peer
       * process's uid after connecting and refuses any other (someone replaced the socket).
       */
      serverUid?: number;
    })
  | (EndpointCommon & { kind: 'tcp'; host: string; port: number })
  | (EndpointCommon & {
      /**
       * Any byte stream to the server, opened by a provider (e.g. a relay exec'd inside an LXD
       * container on another cluster member, carried over LXD's websocket API). The stream
       * emits 'connect' once bytes can flow, then behaves like a socket: 'data', 'error',
       * 'close', with the usual Duplex backpressure (writableLength, pause/resume).
       */
      kind: 'stream';
      /** names the desktop and route for logs, errors and "same endpoint?" checks */
      name: string;
      open: () => Duplex;
    });

/**
 * Is `host` this machine (a loopback address or `localhost`)? A TCP endpoint elsewhere is a
 * remote link and should say so (`remote: true`).
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped?.[1] !== undefined && mapped[1].startsWith('127.');
}

/** `unix:<path>`, `tcp:<host>:<port>` or `stream:<name>`, for logs and errors (never the password). */
export function describeEndpoint(ep: RfbEndpoint): string {
  switch (ep.kind) {
    case 'unix':
      return `unix:${ep.path}`;
    case 'tcp':
      return `tcp:${ep.host}:${ep.port}`;
    case 'stream':
      return `stream:${ep.name}`;
  }
}

/** How a socket's reads are taken instead of 'data' events (net's `onread`). */
export interface OnRead {
  buffer: () => Uint8Array;
  /** false pauses the socket */
  callback: (bytes: number, buf: Uint8Array) => boolean;
}

/**
 * Opens a connection to the endpoint; the caller listens for 'connect', 'data' and 'error'.
 * With `onread`, a Unix or TCP socket reads into the buffers it gives and emits no 'data'
 * (the result says whether it was used: a stream endpoint still emits 'data').
 */
export function connectEndpoint(
  ep: RfbEndpoint,
  onread?: OnRead,
): { socket: Duplex; onread: boolean } {
  switch (ep.kind) {
    case 'unix':
      return { socket: net.createConnection({ path: ep.path, onread }), onread: !!onread };
    case 'tcp':
      return {
        socket: net.createConnection({ host: ep.host, port: ep.port, onread }),
        onread: !!onread,
      };
    case 'stream':
      return { socket: ep.open(), onread: false };
  }
}

/** Do two endpoints reach the same server the same way? */
export function sameEndpoint(a: RfbEndpoint, b: RfbEndpoint): boolean {
  switch (a.kind) {
    case 'unix':
      return b.kind === 'unix' && a.path === b.path && a.serverUid === b.serverUid;
    case 'tcp':
      return b.kind === 'tcp' && a.host === b.host && a.port === b.port;
    case 'stream':
      return b.kind === 'stream' && a.name === b.name;
  }
}
