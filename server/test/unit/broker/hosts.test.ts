import { beforeEach, describe, expect, it } from 'vitest';
import { Broker } from '../../../src/broker/broker.js';
import { PoolAdmin } from '../../../src/broker/pools.js';
import type {
  CreateSpec,
  DesktopHandle,
  Provider,
  ProviderHost,
} from '../../../src/providers/types.js';
import { ADMIN, FakeProvider, brokerHelpers, codeOf, log, useBroker } from './fixture.js';

/*
 * Placement through the broker: a provider with several hosts (as the LXD cluster's members
 * are), the hosts table, the admin's drain and per-host maximum, and the load counted from
 * the desktops the store records. The policy itself is tested in placement.test.ts; a real
 * two-member LXD cluster in test/integration/lxd-cluster.test.ts.
 */

/** The fixture's fake provider, on hosts: each desktop's handle names the host it runs on. */
class HostedFake extends FakeProvider {
  members: ProviderHost[] = [
    { name: 'm1', address: 'https://127.0.0.2:8443', online: true, detail: 'Online' },
    { name: 'm2', address: 'https://127.0.0.3:8443', online: true, detail: 'Online' },
  ];
  async hosts(): Promise<ProviderHost[]> {
    return this.members;
  }
  override async create(spec: CreateSpec): Promise<DesktopHandle> {
    const h = await super.create(spec);
    return { ...h, member: spec.host ?? 'none' };
  }
}

const env = useBroker();
const { user, entitle, pool } = brokerHelpers(env);
let fake: HostedFake;
let broker: Broker;

beforeEach(() => {
  fake = new HostedFake();
  broker = new Broker(env.store.db, new Map<string, Provider>([['xvnc', fake]]), env.clock, log, {
    tickMs: 60_000,
  });
  env.broker = broker;
  env.pools = new PoolAdmin(env.store.db, broker, env.clock, log);
});

describe('placement on hosts', () => {
  it('spreads new desktops over the least loaded hosts and lists their load', async () => {
    const id = await pool({ maxSize: 10 });
    for (const name of ['a', 'b', 'c', 'd']) {
      const u = await user(name);
      await entitle(id, u);
      await broker.connect(u, id);
    }
    expect(fake.created.map((s) => s.host)).toEqual(['m1', 'm2', 'm1', 'm2']);
    const hosts = await broker.hosts();
    expect(hosts.map((h) => [h.id, h.sessions, h.state])).toEqual([
      ['m1', 2, 'active'],
      ['m2', 2, 'active'],
    ]);
  });

  it('places nothing on a drained host, and honours a per-host maximum', async () => {
    const id = await pool({ maxSize: 10 });
    await broker.hosts(); // the members are recorded on first sight
    await broker.updateHost('m1', { state: 'draining' }, ADMIN);
    await broker.updateHost('m2', { maxSessions: 1 }, ADMIN);
    const a = await user('a');
    await entitle(id, a);
    await broker.connect(a, id);
    expect(fake.created.at(-1)?.host).toBe('m2');
    const b = await user('b');
    await entitle(id, b);
    // m1 drains, m2 is full
    expect(await codeOf(broker.connect(b, id))).toBe('NO_HOST_CAPACITY');
    await broker.updateHost('m1', { state: 'active' }, ADMIN);
    await broker.connect(b, id);
    expect(fake.created.at(-1)?.host).toBe('m1');
    const listed = await broker.hosts();
    expect(listed.find((h) => h.id === 'm2')).toMatchObject({ maxSessions: 1, sessions: 1 });
  });

  it('starts a stopped dedicated desktop again where its disk is, even with every host drained', async () => {
    const id = await pool({ assignment: 'dedicated', maxSize: 3 });
    const u = await user('u');
    await entitle(id, u);
    const first = await broker.connect(u, id);
    expect(fake.created.at(-1)?.host).toBe('m1');
    await broker.logoff(first.sessionId, u, 'logged off by user');
    for (const m of ['m1', 'm2']) await broker.updateHost(m, { state: 'draining' }, ADMIN);
    // a new desktop has nowhere to go, the kept one goes back to its own container
    const again = await broker.connect(u, id);
    expect(again.desktopId).toBe(first.desktopId);
    expect(fake.created).toHaveLength(2);
    expect(fake.created.at(-1)?.host).toBeUndefined();
  });

  it('sends a user back to the host of their existing desktop', async () => {
    const first = await pool({ maxSize: 10 });
    const second = await pool({ maxSize: 10 });
    const filler = await user('filler');
    await entitle(first, filler);
    await broker.connect(filler, first); // m1 now has one desktop
    const u = await user('u');
    await entitle(first, u);
    await entitle(second, u);
    await broker.connect(u, first); // least loaded: m2
    await broker.connect(u, second); // m1 and m2 are even now; u goes back to m2
    expect(fake.created.map((s) => s.host)).toEqual(['m1', 'm2', 'm2']);
  });

  it('shows an offline member as down and places nothing there', async () => {
    const id = await pool({ maxSize: 10 });
    fake.members[0] = { ...fake.members[0]!, online: false, detail: 'Offline' };
    const u = await user('u');
    await entitle(id, u);
    await broker.connect(u, id);
    expect(fake.created.at(-1)?.host).toBe('m2');
    expect((await broker.hosts()).find((h) => h.id === 'm1')).toMatchObject({
      state: 'down',
      online: false,
    });
    expect(await codeOf(broker.updateHost('nope', { state: 'draining' }, ADMIN))).toBe(
      'HOST_NOT_FOUND',
    );
  });
});
