import { describe, expect, it } from 'vitest';
import { placeDesktop, type HostLoad } from '../../../src/broker/placement.js';

const host = (
  name: string,
  sessions: number,
  maxSessions = 10,
  state: HostLoad['state'] = 'active',
) => ({
  name,
  sessions,
  maxSessions,
  state,
});

describe('breadth-first', () => {
  it('picks the least loaded host', () => {
    const r = placeDesktop({
      policy: 'breadth-first',
      hosts: [host('m1', 5), host('m2', 2), host('m3', 4)],
    });
    expect(r).toEqual({ ok: true, host: 'm2', reason: 'least-loaded' });
  });

  it('weighs load against each host maximum', () => {
    // m1 runs 4 of 40 (10 %), m2 2 of 4 (50 %)
    const r = placeDesktop({
      policy: 'breadth-first',
      hosts: [host('m2', 2, 4), host('m1', 4, 40)],
    });
    expect(r.ok && r.host).toBe('m1');
  });

  it('breaks ties by name', () => {
    const r = placeDesktop({ policy: 'breadth-first', hosts: [host('b', 1), host('a', 1)] });
    expect(r.ok && r.host).toBe('a');
  });

  it('spreads a run of placements evenly', () => {
    const hosts = [host('m1', 0), host('m2', 0), host('m3', 0)];
    for (let i = 0; i < 9; i++) {
      const r = placeDesktop({ policy: 'breadth-first', hosts });
      if (!r.ok) throw new Error(r.message);
      hosts.find((h) => h.name === r.host)!.sessions++;
    }
    expect(hosts.map((h) => h.sessions)).toEqual([3, 3, 3]);
  });
});

describe('depth-first', () => {
  it('fills the fullest host that has room, then the next', () => {
    const hosts = [host('m1', 0, 3), host('m2', 0, 3)];
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = placeDesktop({ policy: 'depth-first', hosts });
      if (!r.ok) throw new Error(r.message);
      order.push(r.host);
      hosts.find((h) => h.name === r.host)!.sessions++;
    }
    expect(order).toEqual(['m1', 'm1', 'm1', 'm2', 'm2', 'm2']);
    expect(placeDesktop({ policy: 'depth-first', hosts })).toMatchObject({
      ok: false,
      code: 'ALL_HOSTS_FULL',
    });
  });

  it('prefers a host with a maximum over one without', () => {
    const r = placeDesktop({ policy: 'depth-first', hosts: [host('a', 7, 0), host('b', 1, 5)] });
    expect(r.ok && r.host).toBe('b');
  });
});

describe('every policy', () => {
  it('never places on a draining or down host, nor above a host maximum', () => {
    const hosts = [host('m1', 0, 10, 'draining'), host('m2', 0, 10, 'down'), host('m3', 2, 2)];
    for (const policy of ['breadth-first', 'depth-first'] as const) {
      expect(placeDesktop({ policy, hosts })).toMatchObject({ ok: false, code: 'ALL_HOSTS_FULL' });
    }
    expect(
      placeDesktop({ policy: 'breadth-first', hosts: [host('m1', 0, 10, 'draining')] }),
    ).toMatchObject({ ok: false, code: 'NO_HOSTS' });
    expect(placeDesktop({ policy: 'breadth-first', hosts: [] })).toMatchObject({
      ok: false,
      code: 'NO_HOSTS',
    });
  });

  it('sends a user back to the host of their existing desktop while it has room', () => {
    const hosts = [host('m1', 9), host('m2', 0)];
    expect(placeDesktop({ policy: 'breadth-first', hosts, userHosts: ['m1'] })).toEqual({
      ok: true,
      host: 'm1',
      reason: 'user-host',
    });
    // full or draining: placed by the policy instead
    hosts[0]!.sessions = 10;
    expect(placeDesktop({ policy: 'breadth-first', hosts, userHosts: ['m1'] })).toMatchObject({
      host: 'm2',
      reason: 'least-loaded',
    });
  });
});
