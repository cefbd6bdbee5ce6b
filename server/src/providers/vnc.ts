import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { VncTemplate } from '@vdi/shared';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type Provider,
  type ProviderStatus,
} from './types.js';
import { isLoopbackHost, type RfbEndpoint } from '../rfb/endpoint.js';
import { probeBanner, probeHandshake } from '../rfb/probe.js';

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
  /**
   * The server's own run and data directories. The private sockets of its own desktops live
   * there; a `vnc` host socket inside them would hand one tenant's desktop to another pool's
   * users, so it is refused (by path when a pool is saved, by real path when a desktop is made).
   */
  ownDirs?: string[];
}

/** Where the VNC server listens: TCP, or a unix socket on this machine. */
export type VncAddress = { host: string; port: number } | { socket: string };

export type VncHandle = VncAddress & { password?: string; name: string };

const DEFAULT_PROBE_TIMEOUT_MS = 5_000;

function addressOf(handle: DesktopHandle): VncAddress | undefined {
  const { host, port, socket } = handle;
  if (typeof socket === 'string' && socket.startsWith('/') && host === undefined) {
    return { socket };
  }
  if (typeof host === 'string' && typeof port === 'number' && Number.isInteger(port)) {
    if (port >= 1 && port <= 65535) return { host, port };
  }
  return undefined;
}

/** `host:port` or the socket's path, for names, logs and errors. */
function where(a: VncAddress): string {
  return 'socket' in a ? a.socket : `${a.host}:${a.port}`;
}

function parseHandle(handle: DesktopHandle): VncHandle {
  const address = addressOf(handle);
  if (!address) {
    throw new ProviderError(
      'VNC_BAD_HANDLE',
      'vnc desktop handle lacks a host and port (or a socket path)',
    );
  }
  const { password, name } = handle;
  if (password !== undefined && typeof password !== 'string') {
    throw new ProviderError('VNC_BAD_HANDLE', 'vnc desktop handle has a non-string password');
  }
  return {
    ...address,
    name: typeof name === 'string' ? name : where(address),
    ...(password !== undefined ? { password } : {}),
  };
}

/** `p` and, where it exists, the path it really resolves to. */
function pathsOf(p: string): string[] {
  const resolved = path.resolve(p);
  try {
    return [resolved, fs.realpathSync(resolved)];
  } catch {
    return [resolved]; // not there (yet): the probe or the connection says so
  }
}

export class VncProvider implements Provider {
  readonly kind = 'vnc' as const;
  private readonly probeTimeoutMs: number;
  private readonly ownDirs: string[];

  constructor(opts: VncProviderOptions = {}) {
    this.probeTimeoutMs = opts.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.ownDirs = opts.ownDirs ?? [];
  }

  /**
   * Throws when `socket` is inside an own directory (either as written or as it really
   * resolves): by its path as written, and with `real` also by the path it resolves to.
   */
  private refuseOwnSocket(socket: string, real: boolean): void {
    const dirs = this.ownDirs.flatMap(pathsOf);
    for (const p of real ? pathsOf(socket) : [path.resolve(socket)]) {
      const inside = dirs.find((d) => p === d || p.startsWith(d + path.sep));
      if (inside !== undefined) {
        throw new ProviderError(
          'VNC_OWN_SOCKET',
          `${socket} is inside this server's own directory ${inside} (its desktops' private sockets)`,
        );
      }
    }
  }

  /**
   * The RFB endpoint of an address (no password, no `remote`). A socket is checked again at
   * every connection: the path an admin named may have been turned into a link since.
   */
  private endpointOf(a: VncAddress): RfbEndpoint {
    if (!('socket' in a)) return { kind: 'tcp', host: a.host, port: a.port };
    this.refuseOwnSocket(a.socket, true);
    return { kind: 'unix', path: a.socket };
  }

  status(): Promise<ProviderStatus> {
    return Promise.resolve({
      ok: true,
      detail: 'connects to existing VNC servers over TCP or a local unix socket',
    });
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    const t = VncTemplate.parse(template);
    for (const h of t.hosts) if (h.socket !== undefined) this.refuseOwnSocket(h.socket, false);
    return t;
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
    const address = addressOf(host);
    if (!address) {
      throw new ProviderError(
        'VNC_BAD_HANDLE',
        `desktop ${spec.desktopId}: no host and port, no socket`,
      );
    }
    const name = host.name ?? where(address);
    const probe = await probeBanner(this.endpointOf(address), this.probeTimeoutMs);
    if (!probe.ok) {
      log.warn(
        { desktopId: spec.desktopId, vnc: where(address), reason: probe.reason },
        'vnc host not reachable',
      );
      throw new ProviderError('VNC_UNREACHABLE', `${name} (${where(address)}): ${probe.reason}`);
    }
    log.info(
      {
        desktopId: spec.desktopId,
        vnc: where(address),
        rfb: probe.version,
        auth: host.password ? 'vnc' : 'none',
      },
      'vnc desktop attached',
    );
    const handle: VncHandle = { ...address, name };
    if (host.password !== undefined) handle.password = host.password;
    return { ...handle };
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    const h = parseHandle(handle);
    return {
      ...this.endpointOf(h),
      // a VNC server on another machine: ask for ZRLE / Tight, the bytes cross a network
      ...('host' in h && !isLoopbackHost(h.host) ? { remote: true } : {}),
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
    // a full login, not banner-and-hang-up: TigerVNC counts those as failed logins and, after
    // a few health checks, would lock everyone from this host out (its blacklist)
    let endpoint: RfbEndpoint;
    try {
      endpoint = this.endpointOf(h);
    } catch (err) {
      return { state: 'dead', reason: (err as Error).message };
    }
    const probe = await probeHandshake(
      { ...endpoint, ...(h.password !== undefined ? { password: h.password } : {}) },
      this.probeTimeoutMs,
    );
    if (probe.ok) return { state: 'running' };
    // nothing listens: refused, or (a unix socket) no socket at that path any more
    const gone = probe.kind === 'refused' || ('socket' in h && probe.code === 'ENOENT');
    if (gone) return { state: 'dead', reason: `${h.name}: ${probe.reason}` };
    return { state: 'unresponsive', reason: `${h.name}: ${probe.reason}` };
  }

  destroy(handle: DesktopHandle, log: Logger): Promise<void> {
    // The machine is not ours: forgetting it is all there is to do.
    const address = addressOf(handle);
    log.debug(
      { vnc: address ? where(address) : 'unknown' },
      'vnc desktop released (machine left running)',
    );
    return Promise.resolve();
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = parseHandle(handle);
    return {
      host: where(h),
      name: h.name,
      auth: h.password ? 'VNC password' : 'none',
    };
  }
}
