import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type session from 'express-session';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { openStore, type Store } from '../../../src/store/db.js';
import { DbSessionStore } from '../../../src/store/session-store.js';

let dir: string;
let store: Store;
let clock: ManualClock;
let sessions: DbSessionStore;
const TTL_MS = 3600_000;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-sess-unit-'));
  store = await openStore({ dataDir: dir });
  clock = new ManualClock();
  sessions = new DbSessionStore(store.db, clock, TTL_MS);
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function data(user: string | undefined, expires?: Date): session.SessionData {
  return {
    cookie: { originalMaxAge: TTL_MS, expires, httpOnly: true, path: '/' },
    ...(user ? { passport: { user } } : {}),
  };
}

const asError = (e: unknown) => (e instanceof Error ? e : new Error('session store failed'));
const get = (sid: string) =>
  new Promise<session.SessionData | null | undefined>((resolve, reject) =>
    sessions.get(sid, (err, s) => (err ? reject(asError(err)) : resolve(s))),
  );
const set = (sid: string, s: session.SessionData) =>
  new Promise<void>((resolve, reject) =>
    sessions.set(sid, s, (err) => (err ? reject(asError(err)) : resolve())),
  );

describe('DbSessionStore', () => {
  it('stores, reads back and overwrites a session', async () => {
    await set('s1', data('u1'));
    expect(((await get('s1')) as { passport?: { user: string } }).passport?.user).toBe('u1');
    await set('s1', data('u2'));
    expect(((await get('s1')) as { passport?: { user: string } }).passport?.user).toBe('u2');
    expect(await get('nope')).toBeNull();
  });

  it('expires by the cookie expiry (or the default TTL) on the injected clock', async () => {
    await set('with-expiry', data('u1', new Date(clock.now() + 60_000)));
    await set('default-ttl', data('u1'));
    clock.advance(60_000);
    expect(await get('with-expiry')).toBeNull();
    expect(await get('default-ttl')).not.toBeNull();
    clock.advance(TTL_MS - 60_000);
    expect(await get('default-ttl')).toBeNull();
    expect(await sessions.prune()).toBe(2);
  });

  it('destroyForUser signs out every session of that user and only those', async () => {
    await set('a1', data('alice'));
    await set('a2', data('alice'));
    await set('b1', data('bob'));
    await set('anon', data(undefined));
    expect((await sessions.destroyForUser('alice')).sort()).toEqual(['a1', 'a2']);
    expect(await get('a1')).toBeNull();
    expect(await get('a2')).toBeNull();
    expect(await get('b1')).not.toBeNull();
    expect(await get('anon')).not.toBeNull();
  });
});
