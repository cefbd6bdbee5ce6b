import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deletePoolsAndClose,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { receiveFrames, Viewers } from '../helpers/viewer.js';

/*
 * `GET /metrics` as an operator's Prometheus scrapes it, against a real Xvnc desktop and a
 * real Socket.IO viewer: sessions by state and pool, desktops by state, viewers, frames and
 * bytes sent, encode and broker tick times, sign-ins by result.
 */

const dirs = tempDirs('vdimt');
/** this file's own range of X displays (see xvncProvider) */
const FIRST_DISPLAY = 190;
let ts: TestServer;
let admin: Api;
const pools: string[] = [];
const viewers = new Viewers();

/** one sample's value from the exposition text, or undefined when absent */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) have.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

const scrape = async (): Promise<string> => {
  const r = await fetch(`${ts.url}/metrics`);
  expect(r.status).toBe(200);
  return r.text();
};

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY);
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
});

afterAll(async () => {
  try {
    viewers.closeAll();
    if (ts) await deletePoolsAndClose(ts, admin, pools);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('/metrics', () => {
  it('counts sign-ins, sessions and desktops by state and pool, viewers, frames, encode and tick times', async () => {
    const before = await scrape();
    const ok0 = sample(before, 'vdi_sign_ins_total', { result: 'succeeded' }) ?? 0;
    const failed0 = sample(before, 'vdi_sign_ins_total', { result: 'failed' }) ?? 0;

    const bad = await new Api(ts.url).post('/api/auth/login', {
      username: ADMIN.username,
      password: 'not-the-password',
    });
    expect(bad.status).toBe(401);

    const p = await admin.post('/api/admin/pools', {
      name: 'metered',
      provider: 'xvnc',
      template: { width: 640, height: 480 },
      maxSize: 2,
    });
    expect(p.status).toBe(201);
    pools.push(p.body.id);
    await admin.post('/api/admin/users', { username: 'meter', password: 'meter-password-1' });
    const users = await admin.get('/api/admin/users');
    const meter = (users.body as Array<{ id: string; username: string }>).find(
      (u) => u.username === 'meter',
    )!;
    await admin.post('/api/admin/entitlements', {
      poolId: p.body.id,
      principalType: 'user',
      principalId: meter.id,
    });
    const api = await new Api(ts.url).login('meter', 'meter-password-1');
    const c = await api.post(`/api/pools/${p.body.id}/connect`);
    expect(c.status).toBe(200);
    const v = await viewers.attached(ts.url, api.cookie, c.body.sessionId);
    const frames = receiveFrames(v.socket);
    await until(() => frames.length > 0, 20_000, 'a frame');
    await ts.server.broker.tick();

    const text = await scrape();
    expect(sample(text, 'vdi_sign_ins_total', { result: 'succeeded' })).toBe(ok0 + 1);
    expect(sample(text, 'vdi_sign_ins_total', { result: 'failed' })).toBe(failed0 + 1);
    expect(sample(text, 'vdi_sessions', { state: 'active', pool: 'metered' })).toBe(1);
    expect(sample(text, 'vdi_desktops', { state: 'in-use', pool: 'metered' })).toBe(1);
    expect(sample(text, 'vdi_viewers', { kind: 'user' })).toBe(1);
    expect(sample(text, 'vdi_viewers', { kind: 'shadow' })).toBe(0);
    expect(sample(text, 'vdi_frames_sent_total')).toBeGreaterThanOrEqual(frames.length);
    expect(sample(text, 'vdi_frame_bytes_sent_total')).toBeGreaterThan(0);
    expect(sample(text, 'vdi_frame_encode_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'vdi_broker_tick_seconds_count')).toBeGreaterThanOrEqual(1);

    // the viewer leaves: the session is disconnected, no viewer is counted
    v.socket.close();
    await until(
      async () =>
        sample(await scrape(), 'vdi_sessions', { state: 'disconnected', pool: 'metered' }) === 1,
      10_000,
      'the session counted as disconnected',
    );
    const after = await scrape();
    expect(sample(after, 'vdi_sessions', { state: 'active', pool: 'metered' })).toBeUndefined();
    expect(sample(after, 'vdi_viewers', { kind: 'user' })).toBe(0);
  });
});
