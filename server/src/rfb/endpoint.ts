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
