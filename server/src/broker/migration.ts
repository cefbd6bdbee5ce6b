import type { MoveResult, DrainResult } from '@vdi/shared';
import { ProviderError, type MoveDestination } from '../providers/types.js';
import type { LinkMove } from '../stream/stream-manager.js';
import { jsonColumn, parseObject } from '../store/rows.js';
import type { Actor } from './actor.js';
import { BrokerPart, type BrokerContext } from './context.js';
import type { Desktops } from './desktops.js';
import { BrokerError } from './errors.js';
import type { BrokerQueries, RunningDesktop } from './queries.js';

/**
 * What keeps a desktop's viewers attached across a move: the gateway's streams, on this node
 * and on the others (they find the destination's endpoint from its handle and provider kind).
 */
export interface DesktopLinks {
  prepareMove(
    desktopId: string,
    destination: MoveDestination,
    provider: string,
  ): Promise<LinkMove | undefined>;
}

export interface MigrationOptions {
  /** this server's host (desktops whose row names no host run here) */
  hostName: string;
  /** the hosts a desktop may move to */
  hosts: readonly string[];
  /** how many desktops a drain moves at once */
  drainConcurrency: number;
}

/**
 * Live migration of desktops between hosts (issue 12, decision 12). A move is a desktop
 * state (`migrating`) with one owner: it holds the desktop's lock from start to end, and
 * log-off, reset, power actions and a second move are refused meanwhile (409 MIGRATING).
 * The provider moves the VM; the gateway's stream opens the destination's display before
 * the switch and takes it over after, so viewers stay attached. A failure at any step
 * leaves the desktop running where it was, its row saying why.
 */
export class Migrations extends BrokerPart {
  private links: DesktopLinks | undefined;

  constructor(
    ctx: BrokerContext,
    private readonly queries: BrokerQueries,
    private readonly desktops: Desktops,
    private readonly opts: MigrationOptions,
  ) {
    super(ctx);
  }

  /** the gateway's streams, once it is built */
  setLinks(links: DesktopLinks): void {
    this.links = links;
  }

  get hosts(): readonly string[] {
    return this.opts.hosts;
  }

  get hostName(): string {
    return this.opts.hostName;
  }

  /**
   * Where a running desktop runs, and the hosts of its kind: a provider with members of its
   * own (an LXD cluster) moves between those (`members`), QEMU between the hosts this server
   * runs VMs on.
   */
  private async placesOf({ desktop: d, provider, handle }: RunningDesktop) {
    return {
      current: provider.hostOf?.(handle) ?? d.host ?? this.opts.hostName,
      members: await provider.hosts?.(),
    };
  }

  /** Where one running desktop can move (members online only), and where it runs now. */
  async targetsFor(desktopId: string): Promise<{ hosts: string[]; current: string }> {
    const { members, current } = await this.placesOf(await this.queries.runningDesktop(desktopId));
    if (members !== undefined)
      return { hosts: members.filter((m) => m.online).map((m) => m.name), current };
    return { hosts: [...this.opts.hosts], current };
  }

  /** Move one running desktop to host `to`; resolves once it runs there. */
  async move(desktopId: string, to: string, actor: Actor): Promise<MoveResult> {
    this.desktops.refuseIfMoving(desktopId, 'another move');
    // claimed before the lock: a second move, a log-off or a reset is refused from now on
    this.desktops.moving.set(desktopId, to);
    try {
      return await this.desktops.withDesktop(desktopId, () =>
        this.moveLocked(desktopId, to, actor),
      );
    } finally {
      this.desktops.moving.delete(desktopId);
    }
  }

  private async moveLocked(desktopId: string, to: string, actor: Actor): Promise<MoveResult> {
    const running = await this.queries.runningDesktop(desktopId);
    const { desktop: d, pool, provider, handle } = running;
    if (!provider.migrate)
      throw new BrokerError('NOT_SUPPORTED', `${provider.kind} desktops cannot be moved`, 409);
    const { members, current: from } = await this.placesOf(running);
    const hosts = members?.map((m) => m.name) ?? this.opts.hosts;
    if (!hosts.includes(to))
      throw new BrokerError(
        'UNKNOWN_HOST',
        `no host ${JSON.stringify(to)}; hosts: ${hosts.join(', ')}`,
        400,
      );
    if (d.state !== 'in-use' && d.state !== 'ready')
      throw new BrokerError('DESKTOP_BUSY', `the desktop is ${d.state}; it cannot move now`, 409);
    if (from === to)
      throw new BrokerError('SAME_HOST', `the desktop already runs on host ${to}`, 409);
    const before = d.state;
    const log = this.log.child({ desktopId, from, to });
    await this.db
      .updateTable('desktops')
      .set({ state: 'migrating', state_since: this.nowIso() })
      .where('id', '=', desktopId)
      .execute();
    await this.record(actor, 'desktop.move.start', desktopId, { from, to });
    let link: LinkMove | undefined;
    try {
      const outcome = await provider.migrate(
        handle,
        { destinationHost: to, template: pool.template },
        log,
        {
          destinationReady: async (destination) => {
            link = await this.links?.prepareMove(desktopId, destination, pool.provider);
          },
          holdInput: async () => {
            await link?.holdInput();
          },
          switchedOver: async () => {
            await link?.switchOver();
          },
        },
      );
      await this.db
        .updateTable('desktops')
        .set({
          handle: jsonColumn(outcome.handle),
          // a member moves within the provider's cluster; the node serving it stays
          ...(members !== undefined ? { member: to } : { host: to }),
          state: before,
          state_since: this.nowIso(),
          error: null,
        })
        .where('id', '=', desktopId)
        .execute();
      await this.record(actor, 'desktop.move', desktopId, { from, to, ...outcome.stats });
      return { desktopId, from, to, ...outcome.stats };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      link?.abort(why);
      await this.db
        .updateTable('desktops')
        .set({ state: before, state_since: this.nowIso(), error: `move to ${to} failed: ${why}` })
        .where('id', '=', desktopId)
        .execute();
      await this.record(actor, 'desktop.move.failed', desktopId, { from, to, error: why });
      // postcopy failing after the switch is the one failure that leaves nothing running
      const lost = err instanceof ProviderError && err.code === 'QEMU_MOVE_LOST';
      throw new BrokerError(
        'MOVE_FAILED',
        lost
          ? `the desktop was lost moving to ${to} (its source on ${from} is paused; reset it): ${why}`
          : `the desktop could not be moved to ${to} and still runs on ${from}: ${why}`,
        502,
      );
    }
  }

  /**
   * Drain a host: every running VM desktop on it moves to `to` (default: the first other
   * host), a few at a time. Resolves with each desktop's outcome; one failing stops none.
   */
  async drain(host: string, to: string | undefined, actor: Actor): Promise<DrainResult> {
    const { ids, target } = this.opts.hosts.includes(host)
      ? await this.qemuOn(host, to)
      : await this.lxdVmsOn(host, to);
    await this.record(actor, 'host.drain.start', host, { to: target, desktops: ids });
    const results: DrainResult['results'] = [];
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        try {
          const r = await this.move(id, target, actor);
          results.push({ desktopId: id, ok: true, totalMs: r.totalMs, downtimeMs: r.downtimeMs });
        } catch (err) {
          results.push({ desktopId: id, ok: false, error: (err as Error).message });
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(this.opts.drainConcurrency, ids.length) }, worker),
    );
    const moved = results.filter((r) => r.ok).length;
    await this.record(actor, 'host.drain', host, { to: target, moved, failed: ids.length - moved });
    return { host, to: target, moved, failed: ids.length - moved, results };
  }

  /** The running QEMU desktops on one of this server's VM hosts, and where they go. */
  private async qemuOn(host: string, to: string | undefined) {
    const target = to ?? this.opts.hosts.find((h) => h !== host);
    if (target === undefined || target === host)
      throw new BrokerError('NO_TARGET', `no other host to move the desktops of ${host} to`, 409);
    const rows = await this.db
      .selectFrom('desktops as d')
      .innerJoin('pools as p', 'p.id', 'd.pool_id')
      .select(['d.id', 'd.host'])
      .where('d.state', 'in', ['in-use', 'ready'])
      .where('p.provider', '=', 'qemu')
      .execute();
    const ids = rows
      .filter((r) => (r.host ?? this.opts.hostName) === host)
      .map((r) => r.id)
      .sort();
    return { ids, target };
  }

  /**
   * The running VM desktops on a member of the LXD cluster, and where they go (the first
   * other member online). Container desktops stay: they cannot move live.
   */
  private async lxdVmsOn(host: string, to: string | undefined) {
    const members = this.providers.has('lxd')
      ? await this.provider('lxd')
          .hosts?.()
          .catch(() => undefined)
      : undefined;
    if (members === undefined || !members.some((m) => m.name === host))
      throw new BrokerError('UNKNOWN_HOST', `no host ${JSON.stringify(host)}`, 400);
    const target = to ?? members.find((m) => m.name !== host && m.online)?.name;
    if (target === undefined || target === host)
      throw new BrokerError('NO_TARGET', `no other host to move the desktops of ${host} to`, 409);
    const rows = await this.db
      .selectFrom('desktops as d')
      .innerJoin('pools as p', 'p.id', 'd.pool_id')
      .select(['d.id', 'd.member', 'p.template'])
      .where('d.state', 'in', ['in-use', 'ready'])
      .where('p.provider', '=', 'lxd')
      .execute();
    const ids = rows
      .filter(
        (r) =>
          r.member === host &&
          parseObject(r.template, `the template of desktop ${r.id}'s pool`).vm !== undefined,
      )
      .map((r) => r.id)
      .sort();
    return { ids, target };
  }
}
