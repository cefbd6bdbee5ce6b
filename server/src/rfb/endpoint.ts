import net from 'node:net';

/** Where an RFB client connects to reach a desktop's VNC server. */
export type RfbEndpoint =
  | {
      kind: 'unix';
      path: string;
      password?: string;
      /**
       * The account that must serve the socket. When set, the RFB client checks the peer
       * process's uid after connecting and refuses any other (someone replaced the socket).
       */
      serverUid?: number;
    }
  | { kind: 'tcp'; host: string; port: number; password?: string };

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
