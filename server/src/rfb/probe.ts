import net from 'node:net';
import type { RfbEndpoint } from '../providers/types.js';
import type { ProbeResult } from '../providers/process-util.js';
import { ByteQueue } from './byte-queue.js';
import { RfbError } from './errors.js';
import { Handshake } from './handshake.js';

const REFUSED = new Set(['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * Is this VNC server alive and does it let us in? Runs the whole handshake (version,
 * security with the endpoint's password, ClientInit shared, ServerInit) and hangs up. Unlike
 * reading the banner and hanging up, this is a complete, successful login: servers that
 * count unfinished logins as failures (TigerVNC's blacklist) do not end up locking us out.
 */
export function probeHandshake(endpoint: RfbEndpoint, timeoutMs: number): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    const socket =
      endpoint.kind === 'unix'
        ? net.createConnection({ path: endpoint.path })
        : net.createConnection({ host: endpoint.host, port: endpoint.port });
    const queue = new ByteQueue();
    let received = 0;
    let settled = false;
    const handshake = new Handshake(
      { shared: true, ...(endpoint.password !== undefined ? { password: endpoint.password } : {}) },
      (bytes) => socket.write(bytes),
    );
    const finish = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          kind: 'timeout',
          reason: `no complete RFB handshake within ${timeoutMs} ms (at ${handshake.step})`,
          received,
        }),
      timeoutMs,
    );
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      queue.push(chunk);
      try {
        const done = handshake.advance(queue);
        if (done) finish({ ok: true, version: done.version });
      } catch (err) {
        finish({
          ok: false,
          kind: 'not-rfb',
          reason: err instanceof Error ? err.message : String(err),
          received,
        });
      }
    });
    socket.on('end', () =>
      finish({ ok: false, kind: 'not-rfb', reason: handshake.errorOnClose().message, received }),
    );
    socket.on('error', (err: NodeJS.ErrnoException) =>
      finish({
        ok: false,
        kind: err.code !== undefined && REFUSED.has(err.code) ? 'refused' : 'error',
        reason: err instanceof RfbError ? err.message : `${err.code ?? 'error'}: ${err.message}`,
        received,
      }),
    );
  });
}
