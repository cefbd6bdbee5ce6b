import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Pool, PoolCreateBody, PoolUpdateBody } from '@vdi/shared';
import type { Db } from '../store/db.js';
import type { PoolRow } from '../store/schema.js';
import { jsonColumn, poolRow } from '../store/rows.js';
import type { Clock } from '../clock.js';
import type { Actor } from './actor.js';
import type { Broker } from './broker.js';
import { BrokerError } from './errors.js';
import { isUniqueViolation } from '../store/unique-violation.js';

export function poolFromRow(r: PoolRow): Pool {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    provider: r.provider,
    assignment: r.assignment,
    template: r.template,
    minSize: r.min_size,
    maxSize: r.max_size,
    spares: r.spares,
    disconnectedTimeoutSec: r.disconnected_timeout_sec,
    idleTimeoutSec: r.idle_timeout_sec,
    maxSessionSec: r.max_session_sec,
    maxPerUser: r.max_per_user,
    draining: r.draining === 1,
    createdAt: r.created_at,
  };
}

function checkSizes(min: number, max: number, spares: number): void {
  if (min > max) throw new BrokerError('INVALID', 'minSize cannot exceed maxSize', 400);
  if (spares > max) throw new BrokerError('INVALID', 'spares cannot exceed maxSize', 400);
}

/** Pool definitions: create, edit, resize, drain, delete. Desktops follow on the next tick. */
export class PoolAdmin {
  constructor(
    private readonly db: Db,
    private readonly broker: Broker,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  async list(): Promise<PoolRow[]> {
    return (await this.db.selectFrom('pools').selectAll().orderBy('name').execute()).map(poolRow);
  }

  async create(body: PoolCreateBody, actor: Actor): Promise<Pool> {
    const template = this.broker.provider(body.provider).parseTemplate(body.template);
    checkSizes(body.minSize, body.maxSize, body.spares);
    if (body.provider === 'vnc') {
      const hosts = (template as { hosts: unknown[] }).hosts.length;
      if (body.maxSize > hosts) body = { ...body, maxSize: hosts };
    }
    await this.refuseTakenName(body.name);
    const row: PoolRow = {
      id: randomUUID(),
      name: body.name,
      description: body.description,
      provider: body.provider,
      assignment: body.assignment,
      template,
      min_size: body.minSize,
      max_size: body.maxSize,
      spares: body.spares,
      disconnected_timeout_sec: body.disconnectedTimeoutSec,
      idle_timeout_sec: body.idleTimeoutSec,
      max_session_sec: body.maxSessionSec,
      max_per_user: body.maxPerUser,
      draining: 0,
      created_at: new Date(this.clock.now()).toISOString(),
    };
    await this.db
      .insertInto('pools')
      .values({ ...row, template: jsonColumn(row.template) })
      .execute()
      .catch((err: unknown) => this.nameTaken(err, row.name));
    await this.broker.audit.record({
      actor: actor.name,
      action: 'pool.create',
      target: row.id,
      ip: actor.ip ?? null,
      detail: { name: row.name, provider: row.provider },
    });
    void this.broker.tick();
    return poolFromRow(row);
  }

  async update(poolId: string, body: PoolUpdateBody, actor: Actor): Promise<Pool> {
    const pool = await this.broker.pool(poolId);
    const next = {
      name: body.name ?? pool.name,
      description: body.description ?? pool.description,
      min_size: body.minSize ?? pool.min_size,
      max_size: body.maxSize ?? pool.max_size,
      spares: body.spares ?? pool.spares,
      disconnected_timeout_sec: body.disconnectedTimeoutSec ?? pool.disconnected_timeout_sec,
      idle_timeout_sec: body.idleTimeoutSec ?? pool.idle_timeout_sec,
      max_session_sec: body.maxSessionSec ?? pool.max_session_sec,
      max_per_user: body.maxPerUser ?? pool.max_per_user,
      draining: body.draining === undefined ? pool.draining : body.draining ? 1 : 0,
      template: body.template
        ? this.broker.provider(pool.provider).parseTemplate(body.template)
        : pool.template,
    };
    checkSizes(next.min_size, next.max_size, next.spares);
    if (next.name !== pool.name) await this.refuseTakenName(next.name);
    await this.db
      .updateTable('pools')
      .set({ ...next, template: jsonColumn(next.template) })
      .where('id', '=', poolId)
      .execute()
      .catch((err: unknown) => this.nameTaken(err, next.name));
    await this.broker.audit.record({
      actor: actor.name,
      action:
        body.draining !== undefined && Object.keys(body).length === 1
          ? body.draining
            ? 'pool.drain'
            : 'pool.undrain'
          : 'pool.update',
      target: poolId,
      ip: actor.ip ?? null,
      detail: body,
    });
    void this.broker.tick();
    return poolFromRow({ ...pool, ...next });
  }

  /** Refused while sessions are live unless forced; forced ends them first. */
  async delete(poolId: string, force: boolean, actor: Actor): Promise<void> {
    const pool = await this.broker.pool(poolId);
    const live = await this.db
      .selectFrom('sessions')
      .select('id')
      .where('pool_id', '=', poolId)
      .where('state', '<>', 'ended')
      .execute();
    if (live.length && !force) {
      throw new BrokerError(
        'SESSIONS_ACTIVE',
        `pool "${pool.name}" has ${live.length} live session(s); drain it or delete with force`,
      );
    }
    // drain first so the tick does not start spares while we tear down
    await this.db
      .updateTable('pools')
      .set({ draining: 1, spares: 0, min_size: 0 })
      .where('id', '=', poolId)
      .execute();
    for (const s of live) await this.broker.logoff(s.id, actor, 'pool deleted');
    await this.broker.removePoolDesktops(poolId);
    await this.db.deleteFrom('entitlements').where('pool_id', '=', poolId).execute();
    await this.db.deleteFrom('pools').where('id', '=', poolId).execute();
    await this.broker.audit.record({
      actor: actor.name,
      action: 'pool.delete',
      target: poolId,
      ip: actor.ip ?? null,
      detail: { name: pool.name, force },
    });
  }

  /** a concurrent create or rename took the name between refuseTakenName and the write */
  private nameTaken(err: unknown, name: string): never {
    if (isUniqueViolation(err))
      throw new BrokerError('NAME_TAKEN', `a pool named "${name}" exists already`);
    throw err;
  }

  private async refuseTakenName(name: string): Promise<void> {
    const taken = await this.db
      .selectFrom('pools')
      .select('id')
      .where('name', '=', name)
      .executeTakeFirst();
    if (taken) throw new BrokerError('NAME_TAKEN', `a pool named "${name}" exists already`);
  }
}
