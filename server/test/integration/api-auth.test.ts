import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Api,
  ADMIN,
  startServer,
  tempDirs,
  testConfig,
  type TestServer,
} from '../helpers/server.js';

/*
 * Sign-in and input hardening through the real HTTP stack: rate limits per account and per
 * address (429 + Retry-After), one answer for a wrong password and an unknown user, the
 * session cookie's flags, a new session id at every sign-in, and bad bodies (malformed JSON,
 * wrong types, unknown fields, too large) answered with 400/413 and a clear error while
 * nothing changes. Client addresses are varied with X-Forwarded-For, which the default
 * TRUST_PROXY=loopback honours for requests from 127.0.0.1.
 */

const WINDOW_SEC = 300;
const dirs = tempDirs('vdiau');
let ts: TestServer;
let admin: Api;
let poolId: string;

interface Answer {
  status: number;
  body:
    | {
        error?: { code: string; message: string; details?: { path: string; message: string }[] };
        user?: { username: string };
      }
    | undefined;
  headers: Headers;
  cookie: string | undefined;
}

/** a raw request with full control over body bytes and headers */
async function send(
  method: string,
  p: string,
  o: { body?: string; ip?: string; cookie?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { 'x-requested-with': 'vdi', ...(o.headers ?? {}) };
  if (o.body !== undefined && !headers['content-type'])
    headers['content-type'] = 'application/json';
  if (o.ip) headers['x-forwarded-for'] = o.ip;
  if (o.cookie) headers.cookie = o.cookie;
  const r = await fetch(ts.url + p, { method, headers, body: o.body });
  const text = await r.text();
  let body: Answer['body'];
  try {
    body = text ? (JSON.parse(text) as Answer['body']) : undefined;
  } catch {
    body = undefined;
  }
  const set = r.headers.getSetCookie().find((c) => c.startsWith('vdi.sid='));
  return { status: r.status, body, headers: r.headers, cookie: set?.split(';')[0] };
}

const login = (
  username: string,
  password: string,
  ip: string,
  extra: { cookie?: string; headers?: Record<string, string> } = {},
) =>
  send('POST', '/api/auth/login', { body: JSON.stringify({ username, password }), ip, ...extra });

async function userCount(): Promise<number> {
  return ((await admin.get('/api/admin/users')).body as unknown[]).length;
}

async function auditCount(action: string): Promise<number> {
  return ((await admin.get(`/api/admin/audit?action=${action}&limit=1000`)).body as unknown[])
    .length;
}

beforeAll(async () => {
  ts = await startServer(
    testConfig(
      {
        DEFAULT_POOL: 'false',
        LOGIN_MAX_PER_ACCOUNT: '3',
        LOGIN_MAX_PER_ACCOUNT_TOTAL: '6',
        LOGIN_MAX_PER_IP: '5',
        LOGIN_WINDOW_SEC: String(WINDOW_SEC),
      },
      dirs,
    ),
  );
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
  for (const u of ['erin', 'frank', 'gwen', 'hugo']) {
    expect(
      (await admin.post('/api/admin/users', { username: u, password: `${u}-password-1` })).status,
    ).toBe(201);
  }
  const p = await admin.post('/api/admin/pools', {
    name: 'config-only',
    provider: 'xvnc',
    maxSize: 2,
  });
  expect(p.status).toBe(201);
  poolId = p.body.id;
});

afterAll(async () => {
  if (ts) {
    await ts.server.broker.tick();
    await admin.del(`/api/admin/pools/${poolId}?force=true`);
    await ts.close();
  }
  fs.rmSync(dirs.dataDir, { recursive: true, force: true });
  fs.rmSync(dirs.runDir, { recursive: true, force: true });
});

describe('sign-in answers', () => {
  it('a wrong password and an unknown user get the same answer, and both are audited as failed', async () => {
    const failedBefore = await auditCount('auth.failed');
    const wrong = await login('gwen', 'not-her-password', '10.0.0.1');
    const unknown = await login('nobody-here', 'whatever-password', '10.0.0.2');
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body?.error?.code).toBe('BAD_CREDENTIALS');
    // neither gets a session cookie
    expect(wrong.cookie).toBeUndefined();
    expect(unknown.cookie).toBeUndefined();
    expect(await auditCount('auth.failed')).toBe(failedBefore + 2);
  });

  it('the session cookie is httpOnly, SameSite=Lax, path /, and Secure behind HTTPS', async () => {
    const r = await login('gwen', 'gwen-password-1', '10.0.0.3');
    expect(r.status).toBe(200);
    const set = r.headers.getSetCookie().find((c) => c.startsWith('vdi.sid='))!;
    const attrs = set.split(';').map((a) => a.trim().toLowerCase());
    expect(attrs).toContain('httponly');
    expect(attrs).toContain('samesite=lax');
    expect(attrs).toContain('path=/');
    expect(attrs.some((a) => a.startsWith('expires='))).toBe(true);
    expect(attrs).not.toContain('secure'); // plain HTTP here
    const viaTls = await login('gwen', 'gwen-password-1', '10.0.0.3', {
      headers: { 'x-forwarded-proto': 'https' },
    });
    const tlsSet = viaTls.headers.getSetCookie().find((c) => c.startsWith('vdi.sid='))!;
    expect(tlsSet.split(';').map((a) => a.trim().toLowerCase())).toContain('secure');
  });

  it('anonymous requests get no session cookie at all', async () => {
    const r = await send('GET', '/api/auth/me');
    expect(r.status).toBe(401);
    expect(r.headers.getSetCookie()).toEqual([]);
  });

  it('the session id changes at sign-in (fixation) and the old one stops working', async () => {
    const first = await login('hugo', 'hugo-password-1', '10.0.0.4');
    expect(first.status).toBe(200);
    expect((await send('GET', '/api/auth/me', { cookie: first.cookie })).status).toBe(200);
    // signing in again from a browser that already has a session gets a new id
    const second = await login('hugo', 'hugo-password-1', '10.0.0.4', { cookie: first.cookie });
    expect(second.status).toBe(200);
    expect(second.cookie).toBeDefined();
    expect(second.cookie).not.toBe(first.cookie);
    expect((await send('GET', '/api/auth/me', { cookie: first.cookie })).status).toBe(401);
    expect((await send('GET', '/api/auth/me', { cookie: second.cookie })).status).toBe(200);
    // a session id planted by someone else is not adopted
    const planted = 'vdi.sid=s%3Aattacker-chosen-id.bm90LWEtc2lnbmF0dXJl';
    const third = await login('hugo', 'hugo-password-1', '10.0.0.4', { cookie: planted });
    expect(third.cookie).toBeDefined();
    expect(third.cookie).not.toBe(planted);
    expect((await send('GET', '/api/auth/me', { cookie: planted })).status).toBe(401);
  });

  it('sign-out ends the session on the server', async () => {
    const r = await login('hugo', 'hugo-password-1', '10.0.0.5');
    const out = await send('POST', '/api/auth/logout', { cookie: r.cookie });
    expect(out.status).toBe(204);
    expect((await send('GET', '/api/auth/me', { cookie: r.cookie })).status).toBe(401);
  });
});

describe('sign-in rate limits', () => {
  it('per account and address: 3 failures lock that address out of the account with 429 and Retry-After', async () => {
    for (let i = 0; i < 3; i++)
      expect((await login('erin', 'wrong-password', '10.1.0.1')).status).toBe(401);
    const throttledBefore = await auditCount('auth.throttled');
    const r = await login('erin', 'erin-password-1', '10.1.0.1');
    expect(r.status).toBe(429);
    expect(r.body?.error?.code).toBe('RATE_LIMITED');
    expect(r.cookie).toBeUndefined();
    const retry = Number(r.headers.get('retry-after'));
    expect(Number.isInteger(retry)).toBe(true);
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(WINDOW_SEC);
    expect(r.body?.error?.message).toContain(`${retry} s`);
    expect(await auditCount('auth.throttled')).toBe(throttledBefore + 1);
    // the lock is on that account from that address: another account from there is fine ...
    expect((await login('frank', 'frank-password-1', '10.1.0.1')).status).toBe(200);
    // ... and so is the owner with the right password from an address that has not failed
    expect((await login('erin', 'erin-password-1', '10.1.0.2')).status).toBe(200);
  });

  it('nobody can lock another user out: failures from one address leave the owner signing in', async () => {
    // an attacker keeps hammering gwen's account from one address
    for (let i = 0; i < 10; i++)
      expect([401, 429]).toContain((await login('gwen', 'guess-password', '10.4.0.1')).status);
    expect((await login('gwen', 'gwen-password-1', '10.4.0.1')).status).toBe(429);
    expect((await login('gwen', 'gwen-password-1', '10.4.0.2')).status).toBe(200);
  });

  it('per account overall: 6 failures spread over addresses lock the account for everyone', async () => {
    for (let i = 1; i <= 6; i++)
      expect((await login('hugo', 'wrong-password', `10.5.0.${i}`)).status).toBe(401);
    const r = await login('hugo', 'hugo-password-1', '10.5.1.1');
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('unknown accounts lock the same way (the lockout does not reveal which names exist)', async () => {
    for (let i = 0; i < 3; i++)
      expect((await login('ghost', 'x-password', '10.3.0.1')).status).toBe(401);
    expect((await login('ghost', 'x-password', '10.3.0.1')).status).toBe(429);
    for (let i = 2; i <= 4; i++)
      expect((await login('ghost', 'x-password', `10.3.0.${i}`)).status).toBe(401);
    expect((await login('ghost', 'x-password', '10.3.0.9')).status).toBe(429);
  });

  it('per address: 5 failures on any accounts block that address for every account', async () => {
    for (let i = 0; i < 5; i++)
      expect((await login(`nobody${i}`, 'x-password', '10.2.0.1')).status).toBe(401);
    const r = await login('frank', 'frank-password-1', '10.2.0.1');
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    // another address is fine
    expect((await login('frank', 'frank-password-1', '10.2.0.2')).status).toBe(200);
  });

  it('malformed sign-in bodies are 400 and do not count as attempts', async () => {
    const ip = '10.4.0.1';
    const bad = [
      '{"username": "frank", "password": ',
      JSON.stringify({ username: 5, password: true }),
      JSON.stringify({ username: 'frank', password: 'frank-password-1', admin: true }),
      JSON.stringify({ username: 'frank' }),
      JSON.stringify({ username: 'has spaces', password: 'x' }),
      '[]',
    ];
    for (let round = 0; round < 2; round++) {
      for (const body of bad) {
        const r = await send('POST', '/api/auth/login', { body, ip });
        expect(r.status, body).toBe(400);
        expect(['BAD_JSON', 'INVALID']).toContain(r.body?.error?.code);
      }
    }
    // 12 bad bodies from this address, more than its limit of 5: still allowed to sign in
    expect((await login('frank', 'frank-password-1', ip)).status).toBe(200);
  });
});

describe('bad input changes nothing', () => {
  it('malformed JSON, wrong types, unknown fields and short passwords are refused with a clear 400', async () => {
    const users = await userCount();
    const created = await auditCount('user.create');
    const cases: { body: string; code: string; path?: string }[] = [
      { body: '{"username": "ivan", "password": "ivan-password-1"', code: 'BAD_JSON' },
      {
        body: JSON.stringify({ username: 'ivan', password: 12345678 }),
        code: 'INVALID',
        path: 'password',
      },
      {
        body: JSON.stringify({ username: ['ivan'], password: 'ivan-password-1' }),
        code: 'INVALID',
        path: 'username',
      },
      {
        body: JSON.stringify({ username: 'ivan', password: 'short' }),
        code: 'INVALID',
        path: 'password',
      },
      {
        body: JSON.stringify({ username: 'ivan', password: 'ivan-password-1', role: 'root' }),
        code: 'INVALID',
        path: 'role',
      },
      {
        body: JSON.stringify({ username: 'ivan', password: 'ivan-password-1', isAdmin: true }),
        code: 'INVALID',
      },
    ];
    for (const c of cases) {
      const r = await send('POST', '/api/admin/users', { body: c.body, cookie: admin.cookie });
      expect([r.status, r.body?.error?.code], c.body).toEqual([400, c.code]);
      expect(r.body?.error?.message.length).toBeGreaterThan(5);
      if (c.path)
        expect(
          r.body?.error?.details?.map((d) => d.path),
          c.body,
        ).toContain(c.path);
    }
    // a body that is not JSON at all
    const text = await send('POST', '/api/admin/users', {
      body: 'username=ivan&password=ivan-password-1',
      cookie: admin.cookie,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(text.status).toBe(400);
    expect(await userCount()).toBe(users);
    expect(await auditCount('user.create')).toBe(created);
  });

  it('an oversized body gets 413 and nothing is created', async () => {
    const users = await userCount();
    const big = JSON.stringify({
      username: 'ivan',
      password: 'ivan-password-1',
      displayName: 'x'.repeat(300 * 1024),
    });
    const r = await send('POST', '/api/admin/users', { body: big, cookie: admin.cookie });
    expect([r.status, r.body?.error?.code]).toEqual([413, 'TOO_LARGE']);
    const hugeLogin = await send('POST', '/api/auth/login', {
      body: JSON.stringify({ username: 'frank', password: 'p'.repeat(400 * 1024) }),
      ip: '10.5.0.1',
    });
    expect(hugeLogin.status).toBe(413);
    expect(await userCount()).toBe(users);
  });

  it('pool edits with wrong types or impossible sizes are refused and the pool is unchanged', async () => {
    const before = (await admin.get(`/api/admin/pools/${poolId}`)).body;
    const cases: [string, string][] = [
      [JSON.stringify({ maxSize: '5' }), 'INVALID'],
      [JSON.stringify({ maxSize: -1 }), 'INVALID'],
      [JSON.stringify({ spares: 1.5 }), 'INVALID'],
      [JSON.stringify({ minSize: 5, maxSize: 2 }), 'INVALID'],
      [JSON.stringify({ spares: 9 }), 'INVALID'],
      [JSON.stringify({ draining: 'yes' }), 'INVALID'],
      [JSON.stringify({ template: { width: 'wide' } }), 'INVALID'],
      [JSON.stringify({ provider: 'qemu' }), 'INVALID'],
      ['{"maxSize": 3,', 'BAD_JSON'],
    ];
    for (const [body, code] of cases) {
      const r = await send('PATCH', `/api/admin/pools/${poolId}`, { body, cookie: admin.cookie });
      expect([r.status, r.body?.error?.code], body).toEqual([400, code]);
    }
    expect((await admin.get(`/api/admin/pools/${poolId}`)).body).toEqual(before);
    expect(await auditCount('pool.update')).toBe(0);
  });

  it('pool creation with a bad provider or template creates nothing', async () => {
    const before = ((await admin.get('/api/admin/pools')).body as unknown[]).length;
    for (const body of [
      { name: 'x1', provider: 'vmware' },
      { name: 'x2', provider: 'xvnc', template: { width: 10, height: 10 } },
      { name: 'x3', provider: 'xvnc', template: { sessionCommand: '' } },
      { name: 'x4', provider: 'xvnc', assignment: 'shared' },
      { name: '', provider: 'xvnc' },
    ]) {
      const r = await admin.post('/api/admin/pools', body);
      expect([r.status, r.error?.code], JSON.stringify(body)).toEqual([400, 'INVALID']);
    }
    expect(((await admin.get('/api/admin/pools')).body as unknown[]).length).toBe(before);
  });

  it('bad audit filters are refused', async () => {
    for (const q of ['since=yesterday', 'limit=0', 'limit=abc', 'nonsense=1']) {
      const r = await admin.get(`/api/admin/audit?${q}`);
      expect([r.status, r.error?.code], q).toEqual([400, 'INVALID']);
    }
  });

  it('unknown API routes answer 404 in the same error shape', async () => {
    const r = await admin.get('/api/no-such-thing');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: { code: 'NOT_FOUND', message: 'no such API route' } });
  });
});
