import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '@vdi/shared';
import { ManualClock } from '../../src/clock.js';
import {
  deletePoolsAndClose,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { Viewers } from '../helpers/viewer.js';

/*
 * The audit log through GET /api/admin/audit: sign-ins, failed sign-ins, connects (REST and
 * viewer), disconnects, log-offs and admin changes are recorded with actor, target, address
 * and detail; the action-prefix, actor, target, since and limit filters work. A ManualClock
 * separates the two phases of the scenario so `since` has an exact boundary.
 */

const dirs = tempDirs('vdiad');

/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 500;
const clock = new ManualClock(Date.now());
let ts: TestServer;
let admin: Api;
let alice: Api;
let aliceId: string;
let bobId: string;
let poolId: string;
let groupId: string;
let entitlementId: string;
let sessionId: string;
let secondSessionId: string;
let phase2: string;
const viewers = new Viewers();

async function sessionState(id: string): Promise<string> {
  return (
    await ts.server.store.db
      .selectFrom('sessions')
      .select('state')
      .where('id', '=', id)
      .executeTakeFirstOrThrow()
  ).state;
}

async function audit(query = ''): Promise<AuditEntry[]> {
  const r = await admin.get(`/api/admin/audit?limit=1000${query ? `&${query}` : ''}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY, { clock });
  // ---- phase 1: admin set-up and sign-ins
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
  aliceId = (
    await admin.post('/api/admin/users', { username: 'alice', password: 'alice-password-1' })
  ).body.id;
  bobId = (await admin.post('/api/admin/users', { username: 'bob', password: 'bob-password-1' }))
    .body.id;
  groupId = (await admin.post('/api/admin/groups', { name: 'staff' })).body.id;
  await admin.put(`/api/admin/groups/${groupId}/members`, { userIds: [aliceId] });
  poolId = (
    await admin.post('/api/admin/pools', {
      name: 'audited',
      provider: 'xvnc',
      template: { width: 640, height: 480 },
      maxSize: 2,
    })
  ).body.id;
  entitlementId = (
    await admin.post('/api/admin/entitlements', {
      poolId,
      principalType: 'group',
      principalId: groupId,
    })
  ).body.id;
  expect(
    (
      await new Api(ts.url).post('/api/auth/login', {
        username: 'alice',
        password: 'wrong-password',
      })
    ).status,
  ).toBe(401);
  alice = await new Api(ts.url).login('alice', 'alice-password-1');

  // ---- phase 2: sessions and more admin changes, a minute later
  clock.advance(60_000);
  phase2 = new Date(clock.now()).toISOString();
  const c = await alice.post(`/api/pools/${poolId}/connect`);
  expect(c.status).toBe(200);
  sessionId = c.body.sessionId;
  const v1 = await viewers.attached(ts.url, alice.cookie, sessionId);
  await until(async () => (await sessionState(sessionId)) === 'active', 10_000, 'active');
  v1.socket.close();
  await until(
    async () => (await sessionState(sessionId)) === 'disconnected',
    10_000,
    'disconnected',
  );
  expect((await alice.post(`/api/pools/${poolId}/connect`)).body.resumed).toBe(true);
  // the admin disconnects a watched session, then logs it off
  const v2 = await viewers.attached(ts.url, alice.cookie, sessionId);
  await until(async () => (await sessionState(sessionId)) === 'active', 10_000, 'active again');
  expect((await admin.post(`/api/admin/sessions/${sessionId}/disconnect`)).status).toBe(204);
  await v2.closed;
  expect((await admin.post(`/api/admin/sessions/${sessionId}/logoff`)).status).toBe(204);
  // a second session that the user logs off herself
  const c2 = await alice.post(`/api/pools/${poolId}/connect`);
  secondSessionId = c2.body.sessionId;
  expect((await alice.post(`/api/sessions/${secondSessionId}/logoff`)).status).toBe(204);
  await admin.patch(`/api/admin/pools/${poolId}`, { draining: true });
  await admin.patch(`/api/admin/pools/${poolId}`, { maxSize: 3, description: 'resized' });
  await admin.patch(`/api/admin/users/${bobId}`, { disabled: true });
  await admin.patch(`/api/admin/users/${bobId}`, { password: 'bob-new-password-1' });
  await admin.del(`/api/admin/entitlements/${entitlementId}`);
});

afterAll(async () => {
  try {
    viewers.closeAll();
    if (ts) await deletePoolsAndClose(ts, admin, [poolId]);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('audit log contents', () => {
  it('records sign-ins and failed sign-ins with the address', async () => {
    const all = await audit();
    const logins = all.filter((e) => e.action === 'auth.login');
    expect(logins.map((e) => e.actor).sort()).toEqual(['admin', 'alice']);
    const failed = all.filter((e) => e.action === 'auth.failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ actor: 'alice', ip: '127.0.0.1' });
    // no password, right or wrong, is ever written
    expect(JSON.stringify(all)).not.toMatch(/wrong-password|alice-password-1|bob-new-password-1/);
  });

  it('records the session lifecycle: start, viewer connect, disconnect, resume, admin disconnect, log-offs with reasons', async () => {
    const s = (await audit(`target=${sessionId}`)).reverse(); // oldest first
    expect(s.map((e) => [e.action, e.actor])).toEqual([
      ['session.start', 'alice'],
      ['session.connect', 'alice'],
      ['session.disconnect', 'alice'],
      ['session.resume', 'alice'],
      ['session.connect', 'alice'],
      ['session.disconnect', 'admin'],
      ['session.end', 'admin'],
    ]);
    expect(s[0]!.detail).toMatchObject({ poolId, pool: 'audited' });
    expect(s[5]!.detail).toEqual({ reason: 'disconnected by request' });
    expect(s[6]!.detail).toEqual({ reason: 'logged off by administrator admin' });
    const own = await audit(`target=${secondSessionId}&action=session.end`);
    expect(own).toHaveLength(1);
    expect(own[0]).toMatchObject({ actor: 'alice', detail: { reason: 'logged off by user' } });
  });

  it('records admin changes with their targets, and never a password', async () => {
    const all = await audit('actor=admin');
    const find = (action: string, target?: string) =>
      all.filter((e) => e.action === action && (target === undefined || e.target === target));
    expect(
      find('user.create')
        .map((e) => e.target)
        .sort(),
    ).toEqual([aliceId, bobId].sort());
    expect(find('group.create', groupId)).toHaveLength(1);
    expect(find('group.members', groupId)[0]!.detail).toEqual({ userIds: [aliceId] });
    expect(find('pool.create', poolId)[0]!.detail).toEqual({ name: 'audited', provider: 'xvnc' });
    expect(find('entitlement.grant', entitlementId)).toHaveLength(1);
    expect(find('entitlement.revoke', entitlementId)[0]!.detail).toMatchObject({
      poolId,
      principalType: 'group',
      principalId: groupId,
    });
    expect(find('pool.drain', poolId)).toHaveLength(1);
    expect(find('pool.update', poolId)[0]!.detail).toEqual({ maxSize: 3, description: 'resized' });
    expect(find('user.update', bobId)[0]!.detail).toMatchObject({ disabled: true });
    const reset = find('user.password-reset', bobId);
    expect(reset).toHaveLength(1);
    expect(JSON.stringify(reset[0]!.detail)).not.toContain('bob-new-password-1');
  });
});

describe('audit filters', () => {
  it('action is a prefix filter', async () => {
    const sessions = await audit('action=session.');
    expect(sessions.length).toBeGreaterThanOrEqual(9);
    expect(sessions.every((e) => e.action.startsWith('session.'))).toBe(true);
    const pools = await audit('action=pool');
    expect(new Set(pools.map((e) => e.action))).toEqual(
      new Set(['pool.create', 'pool.drain', 'pool.update']),
    );
    expect(await audit('action=session.end')).toHaveLength(2);
    expect(await audit('action=nothing.like.this')).toEqual([]);
    // the prefix is not a pattern: LIKE wildcards in it match only themselves
    expect(await audit('action=%25')).toEqual([]);
    expect(await audit('action=_uth')).toEqual([]);
  });

  it('actor matches exactly', async () => {
    const mine = await audit('actor=alice');
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((e) => e.actor === 'alice')).toBe(true);
    expect(new Set(mine.map((e) => e.action))).toEqual(
      new Set([
        'auth.failed',
        'auth.login',
        'session.start',
        'session.connect',
        'session.disconnect',
        'session.resume',
        'session.end',
      ]),
    );
    expect(await audit('actor=alic')).toEqual([]);
  });

  it('since keeps only entries from that moment on; until the ones before', async () => {
    const all = await audit();
    const later = await audit(`since=${encodeURIComponent(phase2)}`);
    expect(later.length).toBeGreaterThan(0);
    expect(later.length).toBeLessThan(all.length);
    expect(later.every((e) => e.at >= phase2)).toBe(true);
    expect(later.some((e) => e.action === 'auth.login' || e.action === 'pool.create')).toBe(false);
    expect(later.some((e) => e.action === 'session.start')).toBe(true);
    const earlier = await audit(
      `until=${encodeURIComponent(new Date(Date.parse(phase2) - 1).toISOString())}`,
    );
    expect(earlier.length + later.length).toBe(all.length);
    // combined with other filters
    const laterAdmin = await audit(`since=${encodeURIComponent(phase2)}&actor=admin&action=pool.`);
    expect(laterAdmin.map((e) => e.action).sort()).toEqual(['pool.drain', 'pool.update']);
    // a time after everything finds nothing
    expect(
      await audit(`since=${encodeURIComponent(new Date(clock.now() + 1).toISOString())}`),
    ).toEqual([]);
  });

  it('newest first, and limit keeps the newest', async () => {
    const all = await audit();
    const ids = all.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    const two = await admin.get('/api/admin/audit?limit=2');
    expect(two.body.map((e) => e.id)).toEqual(ids.slice(0, 2));
  });
});
