import { randomUUID } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../../src/clock.js';
import type { Store } from '../../../src/store/db.js';
import { Broker } from '../../../src/broker/broker.js';
import { BrokerError } from '../../../src/broker/errors.js';
import type { PoolAdmin } from '../../../src/broker/pools.js';
import type { DesktopHandle, Provider } from '../../../src/providers/types.js';
import { ADMIN, brokerHelpers, codeOf, log, useBroker, type FakeProvider } from './fixture.js';

/*
 * Assignment, lifecycle, tick and reconciliation against a real SQLite store and the fake
 * provider of fixture.ts. The same rules run against real Xvnc desktops in
 * test/integration/broker-*.test.ts.
 */

const env = useBroker();
const { user, entitle, pool, desktops, liveSessions } = brokerHelpers(env);
let store: Store;
let clock: ManualClock;
let fake: FakeProvider;
let broker: Broker;
let pools: PoolAdmin;
beforeEach(() => ({ store, clock, fake, broker, pools } = env));

describe('floating pools', () => {
  it('hands out a warm spare, resumes the same session, destroys the desktop at log-off and refills spares', async () => {
    const id = await pool({ spares: 2, maxSize: 5 });
    const spares = await desktops(id);
    expect(spares.map((d) => d.state)).toEqual(['ready', 'ready']);
    const alice = await user('alice');
    await entitle(id, alice);

    const c = await broker.connect(alice, id);
    expect(c.resumed).toBe(false);
    // the oldest spare, not a newly created desktop
    expect(c.desktopId).toBe(spares[0]!.id);
    expect(fake.created).toHaveLength(2);
    expect((await broker.desktop(c.desktopId))?.state).toBe('in-use');

    const again = await broker.connect(alice, id);
    expect(again).toEqual({ sessionId: c.sessionId, desktopId: c.desktopId, resumed: true });

    await broker.tick();
    expect((await desktops(id)).filter((d) => d.state === 'ready')).toHaveLength(2);

    await broker.logoff(c.sessionId, alice, 'logged off by user');
    expect(await broker.desktop(c.desktopId)).toBeUndefined();
    expect(fake.destroyed).toContainEqual({ desktopId: c.desktopId, keepDisk: false });
    expect((await broker.session(c.sessionId))?.state).toBe('ended');

    await broker.tick();
    const after = await desktops(id);
    expect(after.map((d) => d.state)).toEqual(['ready', 'ready']);

    // the next Connect is a new session on a different desktop
    const next = await broker.connect(alice, id);
    expect(next.resumed).toBe(false);
    expect(next.sessionId).not.toBe(c.sessionId);
    expect(next.desktopId).not.toBe(c.desktopId);
  });

  it('creates a desktop on demand when there is no spare', async () => {
    const id = await pool({ spares: 0, maxSize: 2 });
    expect(await desktops(id)).toHaveLength(0);
    const bob = await user('bob');
    await entitle(id, bob);
    const c = await broker.connect(bob, id);
    expect(fake.created.map((s) => s.desktopId)).toEqual([c.desktopId]);
    expect(fake.created[0]!.persistent).toBe(false);
  });

  it('does not hand out a spare that died while it waited', async () => {
    const id = await pool({ spares: 1, maxSize: 3 });
    const [spare] = await desktops(id);
    fake.kill(spare!.id);
    const u = await user('carol');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    expect(c.desktopId).not.toBe(spare!.id);
    expect(await broker.desktop(spare!.id)).toBeUndefined();
    expect(
      await broker.provider('xvnc').health((await broker.desktop(c.desktopId))!.handle!),
    ).toEqual({ state: 'running' });
  });

  it('leaves nothing behind when a desktop cannot start', async () => {
    const id = await pool({ maxSize: 2 });
    const u = await user('dave');
    await entitle(id, u);
    fake.failCreates = 1;
    expect(await codeOf(broker.connect(u, id))).toBe('DESKTOP_START_FAILED');
    expect(await desktops(id)).toHaveLength(0);
    expect(await liveSessions(id)).toHaveLength(0);
    // and the next try works
    expect((await broker.connect(u, id)).resumed).toBe(false);
  });
});

describe('dedicated pools', () => {
  it('gives a user the same desktop across log-offs, restarting it with its disk kept', async () => {
    const id = await pool({ assignment: 'dedicated', maxSize: 3 });
    const alice = await user('alice');
    await entitle(id, alice);
    const first = await broker.connect(alice, id);
    expect(fake.created[0]).toMatchObject({ desktopId: first.desktopId, persistent: true });
    const d = await broker.desktop(first.desktopId);
    expect(d?.owner_user_id).toBe(alice.id);

    await broker.logoff(first.sessionId, alice, 'logged off by user');
    const stopped = await broker.desktop(first.desktopId);
    expect(stopped).toMatchObject({ state: 'stopped', handle: null, owner_user_id: alice.id });
    expect(fake.destroyed).toContainEqual({ desktopId: first.desktopId, keepDisk: true });
    expect(fake.alive.size).toBe(0);

    const second = await broker.connect(alice, id);
    expect(second.resumed).toBe(false);
    expect(second.sessionId).not.toBe(first.sessionId);
    expect(second.desktopId).toBe(first.desktopId);
    expect(fake.created.map((s) => s.desktopId)).toEqual([first.desktopId, first.desktopId]);
    expect((await broker.desktop(first.desktopId))?.state).toBe('in-use');
  });

  it("never hands one user's desktop to another, even when the pool is full", async () => {
    const id = await pool({ assignment: 'dedicated', maxSize: 1 });
    const alice = await user('alice');
    const bob = await user('bob');
    await entitle(id, alice);
    await entitle(id, bob);
    const a = await broker.connect(alice, id);
    await broker.logoff(a.sessionId, alice, 'logged off by user');
    // Alice's desktop is stopped and the pool is at its max: Bob must not get it
    expect(await codeOf(broker.connect(bob, id))).toBe('POOL_FULL');
    expect(await liveSessions(id)).toHaveLength(0);
    expect(await desktops(id)).toHaveLength(1);
  });

  it("a warm spare becomes the owner's for good", async () => {
    const id = await pool({ assignment: 'dedicated', maxSize: 3, spares: 1 });
    const [spare] = await desktops(id);
    const alice = await user('alice');
    await entitle(id, alice);
    const a = await broker.connect(alice, id);
    expect(a.desktopId).toBe(spare!.id);
    expect((await broker.desktop(spare!.id))?.owner_user_id).toBe(alice.id);
    await broker.tick();
    const free = (await desktops(id)).filter((d) => d.owner_user_id === null);
    expect(free.map((d) => d.state)).toEqual(['ready']);
  });

  it("a Connect while the owner's desktop is still stopping does not give them a second desktop", async () => {
    const id = await pool({ assignment: 'dedicated', maxSize: 3, idleTimeoutSec: 60 });
    const alice = await user('alice');
    await entitle(id, alice);
    const a = await broker.connect(alice, id);
    await broker.markActive(a.sessionId, alice);
    fake.destroyDelayMs = 50;
    clock.advance(61_000);
    // the idle timeout logs the session off in the background while Alice connects again
    const ticking = broker.tick();
    await new Promise((r) => setTimeout(r, 10));
    const results = await Promise.allSettled([broker.connect(alice, id)]);
    await ticking;
    const own = (await desktops(id)).filter((d) => d.owner_user_id === alice.id);
    expect(own).toHaveLength(1);
    const r = results[0];
    if (r.status === 'fulfilled') expect(r.value.desktopId).toBe(a.desktopId);
    else expect((r.reason as BrokerError).code).toBe('DESKTOP_BUSY');
    // once it has stopped, Connect restarts the same desktop
    const again = await broker.connect(alice, id);
    expect(again.desktopId).toBe(a.desktopId);
  });
});

describe('pool size', () => {
  it('keeps min size started and replenishes spares up to max', async () => {
    const id = await pool({ minSize: 3, spares: 0, maxSize: 4 });
    expect((await desktops(id)).map((d) => d.state)).toEqual(['ready', 'ready', 'ready']);
    const id2 = await pool({ spares: 3, maxSize: 2 }).catch((e: unknown) => e);
    expect(id2).toBeInstanceOf(BrokerError);
    expect((id2 as BrokerError).code).toBe('INVALID');
  });

  it('pool full: 409 POOL_FULL with no desktop or session rows created', async () => {
    const id = await pool({ maxSize: 2 });
    const users = await Promise.all(['u1', 'u2', 'u3'].map(user));
    for (const u of users) await entitle(id, u);
    await broker.connect(users[0]!, id);
    await broker.connect(users[1]!, id);
    const createsBefore = fake.created.length;
    const err = await broker.connect(users[2]!, id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect(err).toMatchObject({ code: 'POOL_FULL', status: 409 });
    expect(fake.created.length).toBe(createsBefore);
    expect(await desktops(id)).toHaveLength(2);
    expect(
      await store.db
        .selectFrom('sessions')
        .selectAll()
        .where('user_id', '=', users[2]!.id)
        .execute(),
    ).toHaveLength(0);
  });

  it('resizing down trims idle spares but never a desktop in use', async () => {
    const id = await pool({ spares: 3, maxSize: 5 });
    const u = await user('erin');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.tick();
    expect((await desktops(id)).filter((d) => d.state === 'ready')).toHaveLength(3);

    await pools.update(id, { spares: 1 }, ADMIN);
    await broker.tick();
    const after = await desktops(id);
    expect(after.filter((d) => d.state === 'ready')).toHaveLength(1);
    expect(after.find((d) => d.id === c.desktopId)?.state).toBe('in-use');
    expect(fake.alive.size).toBe(2);
  });

  it('shrinking max below the current count stops idle desktops down to max', async () => {
    const id = await pool({ spares: 3, maxSize: 4 });
    const u = await user('frank');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.tick();
    expect(await desktops(id)).toHaveLength(4);
    await pools.update(id, { maxSize: 2, spares: 2 }, ADMIN);
    await broker.tick();
    const after = await desktops(id);
    expect(after).toHaveLength(2);
    expect(after.find((d) => d.id === c.desktopId)?.state).toBe('in-use');
  });
});

describe('drain and delete', () => {
  it('drain refuses new sessions, resumes existing ones and stops the spares', async () => {
    const id = await pool({ spares: 2, maxSize: 5 });
    const [inSession, newcomer] = await Promise.all([user('gina'), user('hank')]);
    await entitle(id, inSession);
    await entitle(id, newcomer);
    const c = await broker.connect(inSession, id);
    await pools.update(id, { draining: true }, ADMIN);
    const err = await broker.connect(newcomer, id).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'POOL_DRAINING', status: 409 });
    expect(await broker.connect(inSession, id)).toEqual({ ...c, resumed: true });
    await broker.tick();
    const left = await desktops(id);
    expect(left.map((d) => d.id)).toEqual([c.desktopId]);
    await pools.update(id, { draining: false }, ADMIN);
    expect((await broker.connect(newcomer, id)).resumed).toBe(false);
  });

  it('delete is refused with SESSIONS_ACTIVE while a session lives, force ends it and removes everything', async () => {
    const id = await pool({ spares: 1, maxSize: 3, assignment: 'dedicated' });
    const u = await user('ivy');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    expect(await codeOf(pools.delete(id, false, ADMIN))).toBe('SESSIONS_ACTIVE');
    expect(await broker.pool(id)).toBeDefined();
    expect((await broker.session(c.sessionId))?.state).toBe('starting');

    await pools.delete(id, true, ADMIN);
    expect(await codeOf(broker.pool(id))).toBe('NOT_FOUND');
    expect(await broker.session(c.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'pool deleted',
    });
    expect(await desktops(id)).toHaveLength(0);
    expect(fake.alive.size).toBe(0);
    expect(
      await store.db.selectFrom('entitlements').selectAll().where('pool_id', '=', id).execute(),
    ).toHaveLength(0);
  });

  it('a pool with only spares can be deleted without force', async () => {
    const id = await pool({ spares: 2, maxSize: 3 });
    expect(fake.alive.size).toBe(2);
    await pools.delete(id, false, ADMIN);
    expect(fake.alive.size).toBe(0);
  });
});

describe('timeouts (manual clock)', () => {
  async function audit(action: string) {
    return store.db.selectFrom('audit_log').selectAll().where('action', '=', action).execute();
  }

  it('disconnected-timeout logs off a session without a viewer, not a second earlier', async () => {
    const id = await pool({ maxSize: 2, disconnectedTimeoutSec: 300 });
    const u = await user('jo');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.markActive(c.sessionId, u);
    clock.advance(10_000);
    await broker.markDisconnected(c.sessionId, u, 'viewer closed');
    clock.advance(299_000);
    await broker.tick();
    expect((await broker.session(c.sessionId))?.state).toBe('disconnected');
    clock.advance(1_000);
    await broker.tick();
    expect(await broker.session(c.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'disconnected too long',
    });
    expect(await broker.desktop(c.desktopId)).toBeUndefined();
    const ends = await audit('session.end');
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ target: c.sessionId, actor: 'system' });
    expect(JSON.parse(ends[0]!.detail!)).toEqual({ reason: 'disconnected too long' });
  });

  it('a session that never got a viewer counts as disconnected', async () => {
    const id = await pool({ maxSize: 2, disconnectedTimeoutSec: 60 });
    const u = await user('kim');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    clock.advance(60_000);
    await broker.tick();
    expect((await broker.session(c.sessionId))?.ended_reason).toBe('disconnected too long');
  });

  it('idle-timeout ends an active session without input; input keeps it alive', async () => {
    const id = await pool({ maxSize: 2, idleTimeoutSec: 120, disconnectedTimeoutSec: 0 });
    const u = await user('lee');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.markActive(c.sessionId, u);
    clock.advance(100_000);
    broker.noteInput(c.sessionId);
    await waitForDb(
      async () =>
        (await broker.session(c.sessionId))?.last_input_at === new Date(clock.now()).toISOString(),
    );
    clock.advance(100_000); // 200 s since connect, 100 s since input
    await broker.tick();
    expect((await broker.session(c.sessionId))?.state).toBe('active');
    clock.advance(20_000);
    await broker.tick();
    expect(await broker.session(c.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'idle too long',
    });
    expect(JSON.parse((await audit('session.end'))[0]!.detail!)).toEqual({
      reason: 'idle too long',
    });
  });

  it('max session length ends even an active, busy session', async () => {
    const id = await pool({ maxSize: 2, maxSessionSec: 3600, idleTimeoutSec: 0 });
    const u = await user('max');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.markActive(c.sessionId, u);
    for (let i = 0; i < 6; i++) {
      clock.advance(590_000);
      broker.noteInput(c.sessionId);
      await broker.tick();
    }
    expect((await broker.session(c.sessionId))?.state).toBe('active');
    clock.advance(60_000);
    await broker.tick();
    expect(await broker.session(c.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'maximum session length reached',
    });
    expect(JSON.parse((await audit('session.end'))[0]!.detail!)).toEqual({
      reason: 'maximum session length reached',
    });
  });

  it('zero means never', async () => {
    const id = await pool({
      maxSize: 2,
      disconnectedTimeoutSec: 0,
      idleTimeoutSec: 0,
      maxSessionSec: 0,
    });
    const u = await user('nat');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    clock.advance(365 * 86400_000);
    await broker.tick();
    expect((await broker.session(c.sessionId))?.state).toBe('starting');
  });
});

async function waitForDb(probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the store');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('races', () => {
  it('parallel Connects by one user get one session and one desktop', async () => {
    const id = await pool({ maxSize: 5 });
    const u = await user('olga');
    await entitle(id, u);
    fake.createDelayMs = 30;
    const rs = await Promise.all(Array.from({ length: 20 }, () => broker.connect(u, id)));
    expect(new Set(rs.map((r) => r.sessionId)).size).toBe(1);
    expect(new Set(rs.map((r) => r.desktopId)).size).toBe(1);
    expect(rs.filter((r) => !r.resumed)).toHaveLength(1);
    expect(fake.created).toHaveLength(1);
    expect(await desktops(id)).toHaveLength(1);
  });

  it('users racing for the last spare: exactly one gets it, the others get POOL_FULL', async () => {
    const id = await pool({ maxSize: 3, spares: 3 });
    const holders = await Promise.all(['h1', 'h2'].map(user));
    for (const h of holders) {
      await entitle(id, h);
      await broker.connect(h, id);
    }
    // max reached, one spare left
    expect((await desktops(id)).filter((d) => d.state === 'ready')).toHaveLength(1);
    const racers = await Promise.all(['r1', 'r2', 'r3', 'r4', 'r5'].map(user));
    for (const r of racers) await entitle(id, r);
    const created = fake.created.length;
    const out = await Promise.all(racers.map((r) => codeOf(broker.connect(r, id))));
    expect(out.filter((c) => c === 'ok')).toHaveLength(1);
    expect(out.filter((c) => c === 'POOL_FULL')).toHaveLength(4);
    expect(fake.created.length).toBe(created);
    const live = await liveSessions(id);
    expect(live).toHaveLength(3);
    expect(new Set(live.map((s) => s.desktop_id)).size).toBe(3);
  });

  it('users racing for the last free capacity (no spares): exactly as many succeed as fit', async () => {
    const id = await pool({ maxSize: 3 });
    const racers = await Promise.all(['s1', 's2', 's3', 's4', 's5', 's6'].map(user));
    for (const r of racers) await entitle(id, r);
    fake.createDelayMs = 20;
    const out = await Promise.all(racers.map((r) => codeOf(broker.connect(r, id))));
    expect(out.filter((c) => c === 'ok')).toHaveLength(3);
    expect(out.filter((c) => c === 'POOL_FULL')).toHaveLength(3);
    expect(await desktops(id)).toHaveLength(3);
    expect(fake.created).toHaveLength(3);
  });

  it('a tick running while users connect never leaves the pool above max', async () => {
    const id = await pool({ maxSize: 4, spares: 2 });
    const racers = await Promise.all(['t1', 't2', 't3', 't4', 't5'].map(user));
    for (const r of racers) await entitle(id, r);
    fake.createDelayMs = 10;
    const out = await Promise.all([
      ...racers.map((r) => codeOf(broker.connect(r, id))),
      broker.tick().then(() => 'tick'),
    ]);
    expect(out.filter((c) => c === 'ok')).toHaveLength(4);
    await broker.tick();
    expect((await desktops(id)).length).toBeLessThanOrEqual(4);
    expect(fake.alive.size).toBeLessThanOrEqual(4);
  });
});

describe('admin disconnect', () => {
  it("is audited as the admin's, even though closing the viewers also marks the session disconnected", async () => {
    const id = await pool({ maxSize: 2 });
    const u = await user('quinn');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    await broker.markActive(c.sessionId, u);
    // what the gateway does when its sockets close: mark it disconnected as the socket's user
    broker.on(
      'session-disconnect',
      (sid) => void broker.markDisconnected(sid, u, 'transport close'),
    );
    await broker.disconnect(c.sessionId, ADMIN);
    await broker.tick();
    const rows = await store.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'session.disconnect')
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: 'test-admin', target: c.sessionId });
    expect(JSON.parse(rows[0]!.detail!)).toEqual({ reason: 'disconnected by request' });
    expect((await broker.session(c.sessionId))?.state).toBe('disconnected');
  });
});

describe('tick', () => {
  it('a tick asked for while one runs still sees changes made before the call', async () => {
    const id = await pool({ maxSize: 5 });
    fake.createDelayMs = 20;
    const running = broker.tick();
    await store.db.updateTable('pools').set({ spares: 2 }).where('id', '=', id).execute();
    await broker.tick();
    expect((await desktops(id)).filter((d) => d.state === 'ready')).toHaveLength(2);
    await running;
  });

  it('a desktop found dead ends its session with the reason', async () => {
    const id = await pool({ maxSize: 3 });
    const u = await user('pat');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    fake.kill(c.desktopId);
    const ended: [string, string][] = [];
    broker.on('session-ended', (s, r) => ended.push([s, r]));
    clock.advance(10_000); // health is checked every 10 s
    await broker.tick();
    expect(ended).toEqual([[c.sessionId, 'desktop lost: fake desktop killed']]);
    expect(await broker.desktop(c.desktopId)).toBeUndefined();
  });

  it('a desktop whose connection was lost is checked at once, not at the next health round', async () => {
    const id = await pool({ maxSize: 3 });
    const u = await user('lee');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    fake.kill(c.desktopId);
    const ended: [string, string][] = [];
    broker.on('session-ended', (s, r) => ended.push([s, r]));
    await broker.tick(); // the health round is 10 s away: nothing noticed yet
    expect(ended).toEqual([]);
    await broker.checkDesktopsSoon([c.desktopId]);
    expect(ended).toEqual([[c.sessionId, 'desktop lost: fake desktop killed']]);
  });
});

describe('admin reset', () => {
  it('power-resets a VM in place: the viewers keep their stream', async () => {
    // a provider with power actions, as the qemu provider has
    const actions: string[] = [];
    Object.assign(fake, {
      powerAction: async (_h: DesktopHandle, action: string) => {
        actions.push(action);
      },
    });
    const id = await pool({ maxSize: 3 });
    const u = await user('vic');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    const restarted: string[] = [];
    broker.on('desktop-restarted', (d) => restarted.push(d));
    await broker.resetDesktop(c.sessionId, ADMIN);
    expect(actions).toEqual(['reset']);
    expect(fake.destroyed).toEqual([]);
    expect(restarted).toEqual([]);
  });

  it('restarts a desktop without power actions and tells the viewers to reattach', async () => {
    const id = await pool({ maxSize: 3 });
    const u = await user('wyn');
    await entitle(id, u);
    const c = await broker.connect(u, id);
    const before = (await broker.desktop(c.desktopId))!.handle;
    const restarted: string[] = [];
    broker.on('desktop-restarted', (d) => restarted.push(d));
    await broker.resetDesktop(c.sessionId, ADMIN);
    expect(fake.destroyed).toEqual([{ desktopId: c.desktopId, keepDisk: false }]);
    expect((await broker.desktop(c.desktopId))!.handle).not.toEqual(before);
    expect(restarted).toEqual([c.desktopId]);
  });
});

describe('reconcile', () => {
  it('re-adopts running desktops, cleans dead ones and ends their sessions, frees claimed desktops without a session', async () => {
    const floating = await pool({ maxSize: 5, spares: 1 });
    const dedicated = await pool({ maxSize: 5, assignment: 'dedicated' });
    const [a, b, c] = await Promise.all(['ra', 'rb', 'rc'].map(user));
    for (const u of [a, b, c]) {
      await entitle(floating, u!);
      await entitle(dedicated, u!);
    }
    const active = await broker.connect(a!, floating);
    await broker.markActive(active.sessionId, a!);
    const dead = await broker.connect(b!, floating);
    const dedDead = await broker.connect(c!, dedicated);
    await broker.tick(); // replace the spare the first Connect took
    const spare = (await desktops(floating)).find((d) => d.state === 'ready')!;
    // a desktop claimed for a session that was never written (the server died in between)
    const claimedId = randomUUID();
    const h = await fake.create({
      desktopId: claimedId,
      poolId: floating,
      template: {},
      persistent: false,
    });
    await store.db
      .insertInto('desktops')
      .values({
        id: claimedId,
        pool_id: floating,
        name: 'x',
        state: 'in-use',
        owner_user_id: null,
        handle: JSON.stringify(h),
        slot: null,
        error: null,
        created_at: new Date(clock.now()).toISOString(),
        state_since: new Date(clock.now()).toISOString(),
      })
      .execute();
    // a half-started desktop (row written, never got a handle)
    const halfId = randomUUID();
    await store.db
      .insertInto('desktops')
      .values({
        id: halfId,
        pool_id: floating,
        name: 'y',
        state: 'provisioning',
        owner_user_id: null,
        handle: null,
        slot: null,
        error: null,
        created_at: new Date(clock.now()).toISOString(),
        state_since: new Date(clock.now()).toISOString(),
      })
      .execute();
    // a leftover the store knows nothing about
    await fake.create({
      desktopId: randomUUID(),
      poolId: floating,
      template: {},
      persistent: false,
    });
    fake.kill(dead.desktopId);
    fake.kill(dedDead.desktopId);

    // a new broker on the same store, as after a restart
    const b2 = new Broker(store.db, new Map<string, Provider>([['xvnc', fake]]), clock, log, {
      tickMs: 60_000,
    });
    const r = await b2.reconcile();
    // the active session's desktop, the spare (and the claimed one, adopted then freed)
    expect(r.adopted).toBeGreaterThanOrEqual(2);
    expect(r.swept).toBe(1);

    expect(await b2.session(active.sessionId)).toMatchObject({ state: 'disconnected' });
    expect((await b2.desktop(active.desktopId))?.state).toBe('in-use');
    expect((await b2.desktop(spare.id))?.state).toBe('ready');
    expect(await b2.session(dead.sessionId)).toMatchObject({
      state: 'ended',
      ended_reason: 'desktop lost while the server was down',
    });
    expect(await b2.desktop(dead.desktopId)).toBeUndefined();
    // a dedicated desktop that died is kept (stopped) for its owner, with its disk
    expect(await b2.session(dedDead.sessionId)).toMatchObject({ state: 'ended' });
    expect(await b2.desktop(dedDead.desktopId)).toMatchObject({
      state: 'stopped',
      handle: null,
      owner_user_id: c!.id,
    });
    expect(await b2.desktop(claimedId)).toBeUndefined();
    expect(await b2.desktop(halfId)).toBeUndefined();
    // only desktops with a row are still running
    const rows = await store.db
      .selectFrom('desktops')
      .select(['id', 'handle'])
      .where('handle', 'is not', null)
      .execute();
    expect(new Set(fake.alive.values())).toEqual(new Set(rows.map((x) => x.id)));

    const resumed = await b2.connect(a!, floating);
    expect(resumed).toEqual({
      sessionId: active.sessionId,
      desktopId: active.desktopId,
      resumed: true,
    });
    const back = await b2.connect(c!, dedicated);
    expect(back.desktopId).toBe(dedDead.desktopId);
  });
});
