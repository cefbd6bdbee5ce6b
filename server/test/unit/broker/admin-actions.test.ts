import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { DesktopHandle } from '../../../src/providers/types.js';
import type { PowerAction } from '@vdi/shared';
import { ADMIN, brokerHelpers, codeOf, useBroker } from './fixture.js';

/*
 * What an administrator does to desktops and accounts goes through the broker, which owns
 * the per-desktop lock: power and snapshot actions, looking at a desktop, deleting a user.
 */

const env = useBroker();
const { user, entitle, pool, desktops } = brokerHelpers(env);

/** Give the fake provider a VM's power and snapshot actions; returns what it was asked. */
function vmActions() {
  const calls: string[] = [];
  const snaps: string[] = [];
  Object.assign(env.fake, {
    powerAction: async (_h: DesktopHandle, action: PowerAction) => void calls.push(action),
    listSnapshots: async () => [...snaps],
    snapshot: async (_h: DesktopHandle, name: string) => void snaps.push(name),
    restore: async (_h: DesktopHandle, name: string) => void calls.push(`restore ${name}`),
  });
  return calls;
}

async function audited(action: string) {
  return env.store.db
    .selectFrom('audit_log')
    .select(['actor', 'target', 'detail'])
    .where('action', '=', action)
    .execute();
}

async function session(over: Record<string, unknown> = {}) {
  const id = await pool({ maxSize: 3, ...over });
  const u = await user(`u-${randomUUID().slice(0, 6)}`);
  await entitle(id, u);
  return { poolId: id, user: u, ...(await env.broker.connect(u, id)) };
}

/** Let every step an unlocked call would take run: event-loop turns, not a clock sleep. */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

describe('power and snapshots', () => {
  it('runs the VM action and audits it under the administrator', async () => {
    const calls = vmActions();
    const s = await session();
    await env.broker.power(s.desktopId, 'stop', ADMIN);
    await env.broker.takeSnapshot(s.desktopId, 'before', ADMIN);
    expect(await env.broker.snapshots(s.desktopId)).toEqual(['before']);
    await env.broker.restoreSnapshot(s.desktopId, 'before', ADMIN);
    expect(calls).toEqual(['stop', 'restore before']);
    expect(await audited('desktop.power.stop')).toEqual([
      { actor: ADMIN.name, target: s.desktopId, detail: null },
    ]);
    expect((await audited('desktop.snapshot'))[0]?.detail).toBe(JSON.stringify({ name: 'before' }));
    expect((await audited('desktop.restore'))[0]?.detail).toBe(JSON.stringify({ name: 'before' }));
  });

  it('says NOT_SUPPORTED for desktops without them, NOT_FOUND and DESKTOP_NOT_RUNNING by the desktop', async () => {
    const s = await session({ assignment: 'dedicated' });
    expect(await codeOf(env.broker.power(s.desktopId, 'reset', ADMIN))).toBe('NOT_SUPPORTED');
    expect(await codeOf(env.broker.snapshots(s.desktopId))).toBe('NOT_SUPPORTED');
    expect(await codeOf(env.broker.takeSnapshot(s.desktopId, 'x', ADMIN))).toBe('NOT_SUPPORTED');
    expect(await codeOf(env.broker.power('no-such-desktop', 'reset', ADMIN))).toBe('NOT_FOUND');
    await env.broker.logoff(s.sessionId, s.user, 'test');
    // a dedicated desktop at rest: its row is kept, it does not run
    expect(await codeOf(env.broker.power(s.desktopId, 'reset', ADMIN))).toBe('DESKTOP_NOT_RUNNING');
    expect(await audited('desktop.power.reset')).toEqual([]);
  });

  it('a power action waits for a log-off that is stopping the desktop, then finds it gone', async () => {
    const calls = vmActions();
    const s = await session();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let stopping!: () => void;
    const entered = new Promise<void>((r) => (stopping = r));
    const destroy = env.fake.destroy.bind(env.fake);
    env.fake.destroy = async (...args: Parameters<typeof destroy>) => {
      stopping();
      await gate;
      return destroy(...args);
    };
    const logoff = env.broker.logoff(s.sessionId, s.user, 'test');
    await entered; // the log-off holds the desktop's lock and is stopping it
    const power = codeOf(env.broker.power(s.desktopId, 'powerdown', ADMIN));
    await settle();
    expect(calls, 'no action on a desktop being stopped').toEqual([]);
    open();
    await logoff;
    expect(await power).toBe('NOT_FOUND');
    expect(calls).toEqual([]);
  });
});

describe('looking at a desktop', () => {
  it('gives what the look found, at the desktop’s endpoint', async () => {
    const s = await session();
    const seen = await env.broker.viewDesktop(s.desktopId, async (endpoint) => endpoint);
    const handle = (await env.broker.desktop(s.desktopId))!.handle!;
    expect(seen).toEqual(env.fake.endpoint(handle));
  });

  it('a look that fails: DESKTOP_GONE when the desktop died (its session ends), else DESKTOP_UNREACHABLE', async () => {
    const s = await session();
    const fail = async () => {
      throw new Error('no answer');
    };
    const unreachable = await env.broker.viewDesktop(s.desktopId, fail).catch((e: unknown) => e);
    expect(unreachable).toMatchObject({ code: 'DESKTOP_UNREACHABLE', status: 503 });
    expect((unreachable as Error).message).toContain('no answer');

    env.fake.kill(s.desktopId);
    const gone = await env.broker.viewDesktop(s.desktopId, fail).catch((e: unknown) => e);
    expect(gone).toMatchObject({ code: 'DESKTOP_GONE', status: 404 });
    expect((gone as Error).message).toContain('fake desktop killed');
    // the health check it asked for has run once a tick is through
    await env.broker.tick();
    expect(await env.broker.session(s.sessionId)).toMatchObject({ state: 'ended' });
    expect(await codeOf(env.broker.viewDesktop(s.desktopId, fail))).toBe('NOT_FOUND');
  });
});

describe('deleting a user', () => {
  it('ends their sessions before signing them out, then removes their grants, memberships, owned desktops and account', async () => {
    const floating = await session();
    const u = floating.user;
    const dedicated = await pool({ assignment: 'dedicated', maxSize: 2 });
    await entitle(dedicated, u);
    const own = await env.broker.connect(u, dedicated);
    await env.broker.logoff(own.sessionId, u, 'test'); // stopped, disk kept for its owner
    const groupId = randomUUID();
    await env.store.db
      .insertInto('groups')
      .values({ id: groupId, name: 'g', description: '', created_at: 'x' })
      .execute();
    await env.store.db
      .insertInto('group_members')
      .values({ group_id: groupId, user_id: u.id })
      .execute();

    const statesAtSignOut: string[] = [];
    await env.broker.removeUser({ id: u.id, username: u.name! }, ADMIN, async () => {
      const s = await env.broker.session(floating.sessionId);
      statesAtSignOut.push(s!.state);
    });

    expect(statesAtSignOut).toEqual(['ended']);
    expect(await env.broker.session(floating.sessionId)).toMatchObject({
      ended_reason: 'user deleted',
    });
    const left = async (table: 'entitlements' | 'group_members' | 'users') =>
      (await env.store.db.selectFrom(table).selectAll().execute()).length;
    expect(await left('entitlements')).toBe(0);
    expect(await left('group_members')).toBe(0);
    expect(await left('users')).toBe(0);
    expect(await desktops(dedicated)).toEqual([]);
    expect(env.fake.purged).toEqual([own.desktopId]);
    expect(await audited('user.delete')).toEqual([
      { actor: ADMIN.name, target: u.id, detail: JSON.stringify({ username: u.name }) },
    ]);
  });
});
