import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { LxdTemplate } from '@vdi/shared';
import type { RfbEndpoint } from '../../rfb/endpoint.js';
import { probeBanner } from '../../rfb/probe.js';
import {
  ProviderError,
  type CreateSpec,
  type DesktopHandle,
  type DesktopHealth,
  type MigrateSpec,
  type MigrationHooks,
  type MigrationOutcome,
  type Provider,
  type ProviderHost,
  type ProviderStatus,
} from '../types.js';
import { LxdApiError, LxdClient } from './client.js';
import { ExecStream } from './exec-stream.js';
import {
  containerConfig,
  containerName,
  parseLxdHandle,
  vmDevices,
  type LxdHandle,
} from './spec.js';
import { lxdVmMove, movedName, qmpOf } from './vm-move.js';
import {
  DEFAULT_MIGRATION,
  migrateVm,
  recoverSource,
  type MigrationSettings,
} from '../qemu/migrate.js';

/**
 * Desktops as LXD system containers (issue 11). Each desktop is a container made from the
 * desktop image (infra/lxd/build-image.sh): Xvnc serves RFB on a unix socket inside it. The
 * gateway reaches that socket
 * - on the member it talks to through a `proxy` device: a 0600 unix socket on this host, owned
 *   by the gateway's uid, in the provider's private run directory;
 * - on any other member through an exec of a byte relay inside the container over LXD's
 *   websocket API (the endpoint kind 'stream'), which LXD forwards to that member.
 * Floating desktops are fresh containers deleted at log-off; dedicated ones are stopped and
 * kept, and started again for their owner. Snapshots are LXD's.
 */

export interface LxdProviderOptions {
  client: LxdClient;
  /** private directory (0700) for the proxy devices' sockets */
  runDir: string;
  /**
   * the cluster member this gateway's host is (proxy devices only work there); undefined when
   * LXD is not clustered and runs on this host
   */
  localMember?: string;
  /** this gateway node's name, recorded on its containers (sweep touches only its own) */
  nodeName: string;
  /** longest wait for a new container's RFB banner, in ms @default 180000 */
  readyTimeoutMs?: number;
  /** uid/gid that may use the proxy sockets @default this process's */
  uid?: number;
  gid?: number;
  /** live migration of VM desktops between members @default DEFAULT_MIGRATION */
  migration?: MigrationSettings;
}

/** config keys of a move's destination only, removed once the move stands */
const MOVE_ONLY_KEYS = ['environment.VDI_INCOMING', 'environment.VDI_POSTCOPY'];
/** the device a postcopy destination gets its userfaultfd from */
const UFFD_DEVICE = 'uffd';

/** RFB socket of Xvnc inside the image (infra/lxd/build-image.sh). */
export const GUEST_RFB_SOCKET = '/run/vdi/rfb.sock';
/** The desktop's account inside the image. */
const GUEST_UID = 1000;
/** The writable part of an instance, as GET returns it. */
interface InstanceBody {
  architecture: string;
  config: Record<string, string>;
  devices: Record<string, Record<string, string>>;
  ephemeral: boolean;
  profiles: string[];
  stateful: boolean;
  description: string;
}
/** A moved container's body, as GET returns it: the keys may be absent. */
type SourceBody = InstanceBody & { config: Record<string, string | undefined> };
const DEFAULT_READY_TIMEOUT_MS = 180_000;
const PROBE_TIMEOUT_MS = 5_000;
const RETRY_MS = 250;
const RETRY_REMOTE_MS = 1000;
/** how long a delete waits for LXD to let go of an instance it calls busy, ms */
const BUSY_RETRY_MS = 15_000;
/** a stop that takes longer is forced, in s */
const STOP_TIMEOUT_SEC = 10;

export class LxdProvider implements Provider {
  readonly kind = 'lxd' as const;
  private readonly client: LxdClient;

  private destinations: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: LxdProviderOptions) {
    this.client = opts.client;
  }

  async status(): Promise<ProviderStatus> {
    try {
      const server = await this.client.get<{ environment?: { server_clustered?: boolean } }>(
        '/1.0',
      );
      const clustered = server.environment?.server_clustered === true;
      return {
        ok: true,
        detail: `LXD at ${this.client.describe()}${clustered ? ' (cluster)' : ''}`,
      };
    } catch (err) {
      return { ok: false, detail: `LXD not reachable: ${(err as Error).message}` };
    }
  }

  parseTemplate(template: unknown): Record<string, unknown> {
    return LxdTemplate.parse(template);
  }

  private instancePath(name: string, tail = ''): string {
    return `/1.0/instances/${encodeURIComponent(name)}${tail}`;
  }

  /** Proxy socket path on this host, computed per container (a copy keeps its source's). */
  proxyPath(name: string): string {
    return path.join(this.opts.runDir, `${name}.sock`);
  }

  private isLocal(member: string): boolean {
    return this.opts.localMember === undefined || member === this.opts.localMember;
  }

  async create(spec: CreateSpec, log: Logger): Promise<DesktopHandle> {
    const t = LxdTemplate.parse(spec.template);
    const base = containerName(spec.desktopId);
    let name = base;
    const started = Date.now();
    await fs.mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
    let existing: { location?: string; status?: string } | undefined;
    // a VM desktop that moved runs under the other of its two names (vm-move.ts)
    for (const candidate of t.vm !== undefined ? [base, movedName(base, base)] : [base]) {
      existing = await this.find(candidate);
      if (existing !== undefined) {
        name = candidate;
        break;
      }
    }
    if (existing !== undefined && !spec.persistent) {
      // a floating desktop is never reused: a leftover of a crash goes
      await this.remove(name, log);
      existing = undefined;
    }
    if (existing === undefined) {
      const target = spec.host ?? this.opts.localMember;
      const local = target === undefined || this.isLocal(target);
      const body = {
        name,
        type: 'container',
        source: { type: 'image', alias: t.image },
        profiles: [],
        config: containerConfig(t, {
          desktopId: spec.desktopId,
          poolId: spec.poolId,
          node: this.opts.nodeName,
          persistent: spec.persistent,
        }),
        devices: this.devices(name, t, local),
      };
      const query = spec.host !== undefined ? `?target=${encodeURIComponent(spec.host)}` : '';
      await this.client.run('POST', `/1.0/instances${query}`, body);
      log.info({ name, target, ms: Date.now() - started }, 'lxd container created');
    }
    const inst = await this.client.get<{ location: string }>(this.instancePath(name));
    const member = inst.location || 'none';
    // a proxy device is ours to recompute: the listen path belongs to this container and host
    await this.ensureProxy(name, member);
    await fs.rm(this.proxyPath(name), { force: true });
    await this.start(name);
    const handle: LxdHandle = {
      name,
      member,
      persistent: spec.persistent,
    };
    try {
      await this.waitReady(handle);
    } catch (err) {
      if (!spec.persistent) await this.remove(name, log).catch(() => undefined);
      throw err;
    }
    log.info({ name, member, ms: Date.now() - started }, 'lxd desktop ready');
    return { ...handle };
  }

  private async find(name: string): Promise<{ location?: string; status?: string } | undefined> {
    try {
      return await this.client.get(this.instancePath(name));
    } catch (err) {
      if (err instanceof LxdApiError && err.code === 'LXD_NOT_FOUND') return undefined;
      throw err;
    }
  }

  private devices(
    name: string,
    t: LxdTemplate,
    local: boolean,
  ): Record<string, Record<string, string>> {
    const devices: Record<string, Record<string, string>> = {
      root: { type: 'disk', path: '/', pool: t.storagePool },
      ...vmDevices(t),
    };
    if (t.network !== undefined) {
      devices.eth0 = { type: 'nic', name: 'eth0', network: t.network };
    }
    if (local) devices.rfb = this.proxyDevice(name);
    return devices;
  }

  private proxyDevice(name: string): Record<string, string> {
    return {
      type: 'proxy',
      listen: `unix:${this.proxyPath(name)}`,
      connect: `unix:${GUEST_RFB_SOCKET}`,
      bind: 'host',
      mode: '0600',
      uid: String(this.opts.uid ?? process.getuid?.() ?? 0),
      gid: String(this.opts.gid ?? process.getgid?.() ?? 0),
    };
  }

  /** Sets (or removes) the proxy device so that its listen path is this host's, for this name. */
  private async ensureProxy(name: string, member: string): Promise<void> {
    const want = this.isLocal(member) ? this.proxyDevice(name) : undefined;
    await this.rewrite(name, (body) => {
      if (JSON.stringify(body.devices.rfb) === JSON.stringify(want)) return false;
      if (want === undefined) delete body.devices.rfb;
      else body.devices.rfb = want;
      return true;
    });
  }

  /**
   * Changes an instance's writable body; `change` says whether it changed anything. A PUT of
   * the whole body: a PATCH would merge, and could not remove a device or a key.
   */
  private async rewrite(name: string, change: (body: InstanceBody) => boolean): Promise<void> {
    const inst = await this.client.get<InstanceBody>(this.instancePath(name));
    const body: InstanceBody = {
      architecture: inst.architecture,
      config: { ...inst.config },
      devices: { ...inst.devices },
      ephemeral: inst.ephemeral,
      profiles: inst.profiles,
      stateful: inst.stateful,
      description: inst.description,
    };
    if (change(body)) await this.client.run('PUT', this.instancePath(name), body);
  }

  endpoint(handle: DesktopHandle): RfbEndpoint {
    const h = parseLxdHandle(handle);
    if (this.isLocal(h.member)) return { kind: 'unix', path: this.proxyPath(h.name) };
    return this.relayEndpoint(handle);
  }

  /** The exec byte relay, whatever member runs the container (tests use it on one host too). */
  relayEndpoint(handle: DesktopHandle): RfbEndpoint {
    const h = parseLxdHandle(handle);
    return {
      kind: 'stream',
      name: `lxd-exec:${h.name}@${h.member}`,
      // a relay through LXD's API crosses the network: ask for compressed encodings
      remote: true,
      open: () =>
        new ExecStream(this.client, {
          instance: h.name,
          command: ['socat', '-', `UNIX-CONNECT:${GUEST_RFB_SOCKET}`],
          user: GUEST_UID,
          group: GUEST_UID,
        }),
    };
  }

  private async waitReady(h: LxdHandle): Promise<void> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    let last = 'not tried';
    while (Date.now() < deadline) {
      const r = await probeBanner(this.endpoint({ ...h }), PROBE_TIMEOUT_MS);
      if (r.ok) return;
      last = r.reason;
      // each try on another member is an exec: fewer of them
      await new Promise((res) =>
        setTimeout(res, this.isLocal(h.member) ? RETRY_MS : RETRY_REMOTE_MS),
      );
    }
    throw new ProviderError(
      'LXD_NOT_READY',
      `container ${h.name} on ${h.member} did not serve RFB: ${last}`,
    );
  }

  async health(handle: DesktopHandle): Promise<DesktopHealth> {
    const h = parseLxdHandle(handle);
    try {
      const st = await this.client.get<{ status: string }>(this.instancePath(h.name, '/state'));
      if (st.status === 'Running') return { state: 'running' };
      if (st.status === 'Frozen') return { state: 'paused', reason: 'container frozen' };
      return { state: 'dead', reason: `container ${st.status.toLowerCase()}` };
    } catch (err) {
      if (err instanceof LxdApiError && err.code === 'LXD_NOT_FOUND') {
        return { state: 'dead', reason: 'container gone' };
      }
      return { state: 'unresponsive', reason: (err as Error).message };
    }
  }

  async destroy(handle: DesktopHandle, log: Logger, opts?: { keepDisk?: boolean }): Promise<void> {
    const h = parseLxdHandle(handle);
    if (opts?.keepDisk === true && h.persistent) {
      await this.stop(h.name);
      log.info({ name: h.name }, 'lxd desktop stopped, kept');
    } else {
      await this.remove(h.name, log);
    }
    // LXD leaves the proxy's socket behind on stop and delete
    await fs.rm(this.proxyPath(h.name), { force: true });
  }

  /** Starts a container; a failure carries the end of LXC's log (why, in LXC's words). */
  private async start(name: string): Promise<void> {
    try {
      await this.client.run('PUT', this.instancePath(name, '/state'), {
        action: 'start',
        timeout: 60,
      });
    } catch (err) {
      const tail = await this.client
        .text(this.instancePath(name, '/logs/lxc.log'))
        .then((t) =>
          t
            .split('\n')
            .filter((l) => /ERROR/.test(l))
            .slice(-5)
            .join('\n'),
        )
        .catch(() => '');
      throw new ProviderError(
        'LXD_START_FAILED',
        `container ${name} did not start: ${(err as Error).message}${tail ? `\n${tail}` : ''}`,
      );
    }
  }

  private async stop(name: string): Promise<void> {
    try {
      await this.client.run('PUT', this.instancePath(name, '/state'), {
        action: 'stop',
        timeout: STOP_TIMEOUT_SEC,
        force: true,
      });
    } catch (err) {
      if (err instanceof LxdApiError && err.code === 'LXD_NOT_FOUND') return;
      // already stopped is fine
      if (/already stopped|not running/i.test((err as Error).message)) return;
      throw err;
    }
  }

  private async remove(name: string, log: Logger): Promise<void> {
    await this.stop(name);
    // LXD 5.0 may still hold the instance for the stop it just reported done ("busy running
    // a stop operation"): try again for a while
    const deadline = Date.now() + BUSY_RETRY_MS;
    for (;;) {
      try {
        await this.client.run('DELETE', this.instancePath(name));
        log.info({ name }, 'lxd container deleted');
        break;
      } catch (err) {
        if (err instanceof LxdApiError && err.code === 'LXD_NOT_FOUND') break;
        if (!/busy/i.test((err as Error).message) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
    await fs.rm(this.proxyPath(name), { force: true });
  }

  abandonMove(handle: DesktopHandle): Promise<string[]> {
    return recoverSource(() => qmpOf(this.client, parseLxdHandle(handle).name));
  }

  async powerAction(
    handle: DesktopHandle,
    action: 'reset' | 'powerdown' | 'stop' | 'cont',
  ): Promise<void> {
    const h = parseLxdHandle(handle);
    const body =
      action === 'reset'
        ? { action: 'restart', timeout: STOP_TIMEOUT_SEC, force: true }
        : action === 'powerdown'
          ? { action: 'stop', timeout: STOP_TIMEOUT_SEC }
          : action === 'stop'
            ? { action: 'freeze' }
            : { action: 'unfreeze' };
    await this.client.run('PUT', this.instancePath(h.name, '/state'), body);
  }

  async snapshot(handle: DesktopHandle, name: string): Promise<void> {
    const h = parseLxdHandle(handle);
    await this.client.run('POST', this.instancePath(h.name, '/snapshots'), {
      name,
      stateful: false,
    });
  }

  /** Restores the container's disk to the snapshot; a running desktop is restarted on it. */
  async restore(handle: DesktopHandle, name: string): Promise<void> {
    const h = parseLxdHandle(handle);
    const st = await this.client.get<{ status: string }>(this.instancePath(h.name, '/state'));
    const wasRunning = st.status === 'Running';
    if (wasRunning) await this.stop(h.name);
    await this.client.run('PUT', this.instancePath(h.name), { restore: name });
    if (wasRunning) {
      await fs.rm(this.proxyPath(h.name), { force: true });
      await this.start(h.name);
      await this.waitReady(h);
    }
  }

  async listSnapshots(handle: DesktopHandle): Promise<string[]> {
    const h = parseLxdHandle(handle);
    const urls = await this.client.get<string[]>(this.instancePath(h.name, '/snapshots'));
    return urls.map((u) => decodeURIComponent(u.slice(u.lastIndexOf('/') + 1)));
  }

  async purge(desktopId: string): Promise<void> {
    const base = containerName(desktopId);
    for (const name of [base, movedName(base, base)])
      await this.remove(name, { info: () => undefined } as unknown as Logger);
  }

  /** Deletes this node's floating containers that no known handle accounts for. */
  async sweep(known: DesktopHandle[], log: Logger): Promise<number> {
    const names = new Set(known.map((h) => parseLxdHandle(h).name));
    let list: { name: string; config: Record<string, string | undefined> }[];
    try {
      list = await this.client.get('/1.0/instances?recursion=1');
    } catch (err) {
      // no LXD here (the embedded default): nothing of ours can be left over
      if (known.length > 0) log.warn({ err }, 'lxd not reachable: no sweep of its containers');
      return 0;
    }
    let removed = 0;
    for (const inst of list) {
      const c = inst.config;
      if (c['user.vdi.desktop'] === undefined || c['user.vdi.node'] !== this.opts.nodeName)
        continue;
      if (names.has(inst.name) || c['user.vdi.persistent'] === 'true') continue;
      await this.remove(inst.name, log).catch((err: unknown) =>
        log.warn({ err, name: inst.name }, 'could not remove a leftover lxd container'),
      );
      removed++;
    }
    return removed;
  }

  /** The cluster's members, or undefined when this LXD is not clustered. */
  async hosts(): Promise<ProviderHost[] | undefined> {
    const cluster = await this.client.get<{ enabled: boolean }>('/1.0/cluster');
    if (!cluster.enabled) return undefined;
    const members = await this.client.get<
      { server_name: string; url: string; status: string; message: string }[]
    >('/1.0/cluster/members?recursion=1');
    return members
      .map((m) => ({
        name: m.server_name,
        address: m.url,
        online: m.status === 'Online',
        detail: m.message || m.status,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  describe(handle: DesktopHandle): Record<string, string> {
    const h = parseLxdHandle(handle);
    return {
      container: h.name,
      member: h.member,
      reached: this.isLocal(h.member) ? 'proxy socket' : 'exec relay',
    };
  }

  hostOf(handle: DesktopHandle): string {
    return parseLxdHandle(handle).member;
  }

  /**
   * Moves a running VM desktop to another member while it runs (vm-move.ts): a container
   * desktop cannot move live (LXD would need CRIU), a VM one can.
   */
  async migrate(
    handle: DesktopHandle,
    spec: MigrateSpec,
    log: Logger,
    hooks: MigrationHooks,
  ): Promise<MigrationOutcome> {
    const src = parseLxdHandle(handle);
    const t = LxdTemplate.parse(spec.template);
    if (t.vm === undefined)
      throw new ProviderError(
        'LXD_MOVE_UNSUPPORTED',
        'only VM desktops move live; this pool runs X11 containers',
      );
    const to = spec.destinationHost;
    const members = (await this.hosts()) ?? [];
    const target = members.find((m) => m.name === to);
    if (target === undefined)
      throw new ProviderError('LXD_BAD_HOST', `no cluster member ${JSON.stringify(to)}`);
    if (!target.online)
      throw new ProviderError('LXD_HOST_OFFLINE', `member ${to} is ${target.detail}`);
    if (to === src.member)
      throw new ProviderError('LXD_SAME_HOST', `the desktop already runs on ${to}`);
    const source = await this.client.get<SourceBody>(this.instancePath(src.name));
    const desktopId = source.config['user.vdi.desktop'];
    if (desktopId === undefined)
      throw new ProviderError('LXD_BAD_HANDLE', `${src.name} is not a desktop's container`);
    const plan = lxdVmMove(
      {
        client: this.client,
        // one at a time: LXD 5.0 starting two new containers with isolated id maps on a
        // member at once failed here now and then ("newuidmap failed to write mapping")
        startDestination: (name, member) =>
          this.oneAtATime(async () => {
            await this.createDestination(source, name, member);
            await this.start(name);
          }),
        remove: (name, l) => this.remove(name, l),
        // the destination's next start is an ordinary one; the device goes too (QEMU keeps the
        // descriptor it opened)
        settle: (name) =>
          this.rewrite(name, (body) => {
            const moving = MOVE_ONLY_KEYS.filter((k) => body.config[k] !== undefined);
            if (moving.length === 0 && body.devices[UFFD_DEVICE] === undefined) return false;
            for (const k of moving) delete body.config[k];
            delete body.devices[UFFD_DEVICE];
            return true;
          }),
        endpoint: (h) => this.endpoint({ ...h }),
      },
      { desktopId, source: src, to, baseName: containerName(desktopId) },
    );
    return migrateVm(plan, this.opts.migration ?? DEFAULT_MIGRATION, log, hooks);
  }

  private oneAtATime<T>(f: () => Promise<T>): Promise<T> {
    const run = this.destinations.then(f, f);
    this.destinations = run.catch(() => undefined);
    return run;
  }

  /**
   * The destination of a move: a container from the same image with the source's config and
   * devices (its own proxy device where it runs on this host), waiting for the VM's state.
   */
  private async createDestination(inst: SourceBody, name: string, member: string): Promise<void> {
    const config: Record<string, string> = {};
    for (const [k, v] of Object.entries(inst.config)) {
      // volatile keys are the instance's own state, image keys come with the image
      if (v === undefined || k.startsWith('volatile.') || k.startsWith('image.')) continue;
      config[k] = v;
    }
    config['environment.VDI_INCOMING'] = '1';
    const devices = { ...inst.devices };
    if (this.opts.migration?.postcopy === true) {
      // postcopy: the destination's QEMU pulls pages through a userfaultfd, from the host's
      // /dev/userfaultfd (the image's helper opens it while QEMU is still root)
      config['environment.VDI_POSTCOPY'] = '1';
      devices[UFFD_DEVICE] = {
        type: 'unix-char',
        source: '/dev/userfaultfd',
        path: '/dev/userfaultfd',
        mode: '0600',
      };
    }
    delete devices.rfb;
    if (this.isLocal(member)) devices.rfb = this.proxyDevice(name);
    const image = inst.config['image.alias'] ?? inst.config['volatile.base_image'];
    if (image === undefined)
      throw new ProviderError('LXD_BAD_HANDLE', `${name}'s source does not say its image`);
    await fs.rm(this.proxyPath(name), { force: true });
    await this.client.run('POST', `/1.0/instances?target=${encodeURIComponent(member)}`, {
      name,
      type: 'container',
      source: inst.config['image.alias']
        ? { type: 'image', alias: image }
        : { type: 'image', fingerprint: image },
      profiles: inst.profiles,
      config,
      devices,
    });
  }
}
