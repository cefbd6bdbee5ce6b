/**
 * Is there a working VNC server at an endpoint? Two probes of different depth:
 *
 * - `probeBanner` reads the 12-byte ProtocolVersion banner and hangs up before answering it:
 *   cheap, and enough for a server of ours that does not count unfinished logins (Xvnc
 *   started with -UseBlacklist=0, QEMU).
 * - `probeHandshake` runs the whole login (version, security with the endpoint's password,
 *   ClientInit, ServerInit) and hangs up: for servers that are not ours, which may count a
 *   hang-up after the banner as a failed login (TigerVNC's blacklist) and lock us out.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { ByteQueue } from './byte-queue.js';
import { connectEndpoint, type RfbEndpoint } from './endpoint.js';
import { Handshake } from './handshake.js';

export type ProbeResult =
  | { ok: true; version: string }
  | {
      ok: false;
      /**
       * refused: nothing listens; error: any other socket error (a missing unix socket is
       * ENOENT); timeout: no answer in time; not-rfb: a wrong answer, or a hang-up before a
       * complete one
       */
      kind: ProbeFailure;
      reason: string;
      /** bytes the endpoint sent before the probe gave up */
      received: number;
      /** the socket error's code (ECONNREFUSED, ENOENT...), when a socket error ended it */
      code?: string;
    };

type ProbeFailure = 'refused' | 'timeout' | 'not-rfb' | 'error';

/** "RFB xxx.yyy\n": the ProtocolVersion message of RFC 6143 section 7.1.1 is exactly 12 bytes */
const RFB_BANNER_BYTES = 12;
const RFB_BANNER = /^RFB \d{3}\.\d{3}\n$/;
/** connect errors that mean nothing listens there (rather than a fault on the way) */
const REFUSED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

/** What one probe does with the bytes it gets, and how it explains giving up. */
interface ProbeSteps {
  /** the next bytes from the server; a result ends the probe, a throw ends it as not-rfb */
  data(chunk: Buffer): ProbeResult | undefined;
  /** why time ran out */
  timeoutReason(socket: Duplex, received: number): string;
  /** why a hang-up came before a result */
  endReason(received: number): string;
}

/** Connects, feeds the probe's steps, and settles once: result, hang-up, error or timeout. */
function runProbe(
  endpoint: RfbEndpoint,
  timeoutMs: number,
  steps: (write: (bytes: Buffer) => void) => ProbeSteps,
): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    const { socket } = connectEndpoint(endpoint);
    const probe = steps((bytes) => socket.write(bytes));
    let received = 0;
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const fail = (kind: ProbeFailure, reason: string, code?: string): void =>
      finish({ ok: false, kind, reason, received, ...(code !== undefined ? { code } : {}) });
    const timer = setTimeout(
      () => fail('timeout', probe.timeoutReason(socket, received)),
      timeoutMs,
    );
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      try {
        const result = probe.data(chunk);
        if (result) finish(result);
      } catch (err) {
        fail('not-rfb', err instanceof Error ? err.message : String(err));
      }
    });
    socket.on('end', () => fail('not-rfb', probe.endReason(received)));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      fail(
        err.code !== undefined && REFUSED_CODES.has(err.code) ? 'refused' : 'error',
        `${err.code ?? 'error'}: ${err.message}`,
        err.code,
      );
    });
  });
}

/**
 * Connects, reads the 12-byte RFB ProtocolVersion banner and hangs up before answering it
 * (so the server does not wait for authentication from us).
 */
export function probeBanner(endpoint: RfbEndpoint, timeoutMs: number): Promise<ProbeResult> {
  return runProbe(endpoint, timeoutMs, () => {
    let head = Buffer.alloc(0);
    return {
      data(chunk) {
        head = Buffer.concat([head, chunk]);
        if (head.length < RFB_BANNER_BYTES) return undefined;
        const banner = head.subarray(0, RFB_BANNER_BYTES).toString('latin1');
        if (RFB_BANNER.test(banner)) return { ok: true, version: banner.slice(4, 11) };
        throw new Error(`not an RFB server (banner ${JSON.stringify(banner)})`);
      },
      timeoutReason: (socket, received) =>
        received === 0 && socket instanceof net.Socket && socket.connecting
          ? `no ${endpoint.kind === 'tcp' ? 'TCP ' : ''}connection within ${timeoutMs} ms`
          : `no RFB banner within ${timeoutMs} ms`,
      endReason: (received) => `connection closed after ${received} bytes, before an RFB banner`,
    };
  });
}

/**
 * Is this VNC server alive and does it let us in? Runs the whole handshake (version,
 * security with the endpoint's password, ClientInit shared, ServerInit) and hangs up. Unlike
 * reading the banner and hanging up, this is a complete, successful login: servers that
 * count unfinished logins as failures (TigerVNC's blacklist) do not end up locking us out.
 */
export function probeHandshake(endpoint: RfbEndpoint, timeoutMs: number): Promise<ProbeResult> {
  return runProbe(endpoint, timeoutMs, (write) => {
    const queue = new ByteQueue();
    const handshake = new Handshake(
      { shared: true, ...(endpoint.password !== undefined ? { password: endpoint.password } : {}) },
      write,
    );
    return {
      data(chunk) {
        queue.push(chunk);
        // a protocol error throws: the runner reports it as not-rfb
        const done = handshake.advance(queue);
        return done ? { ok: true, version: done.version } : undefined;
      },
      timeoutReason: () =>
        `no complete RFB handshake within ${timeoutMs} ms (at ${handshake.step})`,
      endReason: () => handshake.errorOnClose().message,
    };
  });
}
