import net from 'node:net';

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
  | (EndpointCommon & { kind: 'tcp'; host: string; port: number });

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

/** `unix:<path>` or `tcp:<host>:<port>`, for logs and errors (never the password). */
export function describeEndpoint(ep: RfbEndpoint): string {
  return ep.kind === 'unix' ? `unix:${ep.path}` : `tcp:${ep.host}:${ep.port}`;
}

/** Opens a socket to the endpoint; the caller listens for 'connect', 'data' and 'error'. */
export function connectEndpoint(ep: RfbEndpoint): net.Socket {
  return ep.kind === 'unix'
    ? net.createConnection({ path: ep.path })
    : net.createConnection({ host: ep.host, port: ep.port });
}
