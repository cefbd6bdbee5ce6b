import net from 'node:net';
import type { Logger } from 'pino';
import { VncTemplate } from '@vdi/shared';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderStatus,
  type RfbEndpoint,
} from './types.js';

/**
 * Existing VNC servers (physical machines, VMs managed elsewhere) as desktops. The pool
 * lists them; each desktop of the pool is one fixed entry (`spec.slot`). Nothing is
 * started or stopped here: the machines are not ours, we only check that they speak RFB.
 *
 * Passwords travel in the handle and the endpoint (the RFB client needs them) but are
 * never written to a log.
 */

export interface VncProviderOptions {
  /** how long to wait for the TCP connect plus the RFB version banner, in ms @default 5000 */
  probeTimeoutMs?: number;
}

export interface VncHandle {
  host: string;
  port: number;
  password?: string;
  name: string;
}

const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
/** "RFB xxx.yyy\n": the ProtocolVersion message of RFC 6143 section 7.1.1 is exactly 12 bytes */
const RFB_BANNER_BYTES = 12;
const RFB_BANNER = /^RFB \d{3}\.\d{3}\n$/;

export type ProbeResult =
  | { ok: true; version: string }
  | { ok: false; kind: 'refused' | 'timeout' | 'not-rfb' | 'error'; reason: string };

/**
 * Opens a TCP connection, reads the 12-byte RFB ProtocolVersion banner and hangs up
 * before answering it (so the server does not wait for authentication from us).
 */
export function probeRfb(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    const socket = net.createConnection({ host, port });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => {
      finish({
        ok: false,
        kind: 'timeout',
        reason:
          received.length === 0 && socket.connecting
            ? `no TCP connection within ${timeoutMs} ms`
            : `no RFB banner within ${timeoutMs} ms`,
      });
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < RFB_BANNER_BYTES) return;
      const banner = received.subarray(0, RFB_BANNER_BYTES).toString('latin1');
      if (RFB_BANNER.test(banner)) finish({ ok: true, version: banner.slice(4, 11) });
      else
        finish({
          ok: false,
          kind: 'not-rfb',
          reason: `not an RFB server (banner ${JSON.stringify(banner)})`,
        });
    });
    socket.on('end', () => {
      finish({
        ok: false,
        kind: 'not-rfb',
        reason: `connection closed after ${received.length} bytes, before an RFB banner`,
      });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const refused =
        err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH';
      finish({
        ok: false,
        kind: refused ? 'refused' : 'error',
        reason: `${err.code ?? 'error'}: ${err.message}`,
      });
    });
  });
}

function parseHandle(handle: DesktopHandle): VncHandle {
  const { host, port, password, name } = handle;
  if (
    typeof host !== 'string' ||
    typeof port !== 'number' ||
    !Number.isInteger(port) ||
    port < 1 ||
    port > 65535
  ) {
    throw new ProviderError('VNC_BAD_HANDLE', 'vnc desktop handle lacks a host and port');
  }
  if (password !== undefined && typeof password !== 'string') {
    throw new ProviderError('VNC_BAD_HANDLE', 'vnc desktop handle has a non-string password');
  }
  return {
    host,
    port,
    name: typeof name === 'string' ? name : `${host}:${port}`,
    ...(password !== undefined ? { password } : {}),
  };
}

export class VncProvider implements Provider {
  readonly kind = 'vnc' as const;
  private readonly probeTimeoutMs: number;

  constructor(opts: VncProviderOptions = {}) {
    this.probeTimeoutMs = opts.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  }

  status(): Promise<ProviderStatus> {
    return Promise.resolve({ ok: true, detail: 'connects to existing VNC servers over TCP' });
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    return VncTemplate.parse(template);
  }

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const template = VncTemplate.parse(spec.template);
    const slot = spec.slot;
    if (slot === undefined) {
      throw new ProviderError(
        'VNC_NO_SLOT',
        `desktop ${spec.desktopId}: a vnc pool desktop needs a slot (which host of the pool)`,
      );
    }
    const host = Number.isInteger(slot) && slot >= 0 ? template.hosts[slot] : undefined;
    if (!host) {
      throw new ProviderError(
        'VNC_SLOT_OUT_OF_RANGE',
        `desktop ${spec.desktopId}: slot ${slot} is outside the pool's ${template.hosts.length} host(s)`,
      );
    }
    const name = host.name ?? `${host.host}:${host.port}`;
    const probe = await probeRfb(host.host, host.port, this.probeTimeoutMs);
    if (!probe.ok) {
      log.warn(
        { desktopId: spec.desktopId, host: host.host, port: host.port, reason: probe.reason },
        'vnc host not reachable',
      );
      throw new ProviderError(
        'VNC_UNREACHABLE',
        `${name} (${host.host}:${host.port}): ${probe.reason}`,
      );
    }
    log.info(
      {
        desktopId: spec.desktopId,
        host: host.host,
        port: host.port,
        rfb: probe.version,
        auth: host.password ? 'vnc' : 'none',
      },
      'vnc desktop attached',
    );
    const handle: VncHandle = { host: host.host, port: host.port, name };
    if (host.password !== undefined) handle.password = host.password;
    return { ...handle };
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    const h = parseHandle(handle);
    return {
      kind: 'tcp',
      host: h.host,
      port: h.port,
      ...(h.password !== undefined ? { password: h.password } : {}),
    };
  }

  async health(handle: DesktopHandle): Promise<DesktopHealth> {
    let h: VncHandle;
    try {
      h = parseHandle(handle);
    } catch (err) {
      return { state: 'dead', reason: (err as Error).message };
    }
    const probe = await probeRfb(h.host, h.port, this.probeTimeoutMs);
    if (probe.ok) return { state: 'running' };
    if (probe.kind === 'refused') return { state: 'dead', reason: `${h.name}: ${probe.reason}` };
    return { state: 'unresponsive', reason: `${h.name}: ${probe.reason}` };
  }

  destroy(handle: DesktopHandle, log: Logger): Promise<void> {
    // The machine is not ours: forgetting it is all there is to do.
    const { host, port } = handle;
    log.debug({ host, port }, 'vnc desktop released (machine left running)');
    return Promise.resolve();
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = parseHandle(handle);
    return {
      host: `${h.host}:${h.port}`,
      name: h.name,
      auth: h.password ? 'VNC password' : 'none',
    };
  }
}
