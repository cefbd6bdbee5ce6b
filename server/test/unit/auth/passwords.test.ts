import { describe, expect, it } from 'vitest';
import { dummyHash, hashPassword, verifyPassword } from '../../../src/auth/passwords.js';

describe('passwords', () => {
  it('hashes with argon2id (salted) and verifies', async () => {
    const h1 = await hashPassword('correct horse battery staple');
    const h2 = await hashPassword('correct horse battery staple');
    expect(h1).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(h1).not.toBe(h2);
    expect(await verifyPassword(h1, 'correct horse battery staple')).toBe(true);
    expect(await verifyPassword(h1, 'correct horse battery stapler')).toBe(false);
  });

  it('a damaged stored hash fails closed instead of throwing', async () => {
    expect(await verifyPassword('not-a-hash', 'x')).toBe(false);
    expect(await verifyPassword('', '')).toBe(false);
  });

  it('the dummy hash used for unknown accounts is a real argon2id hash that matches nothing typed', async () => {
    const d = await dummyHash();
    expect(d).toMatch(/^\$argon2id\$/);
    expect(await dummyHash()).toBe(d);
    expect(await verifyPassword(d, 'not-a-real-password-')).toBe(false);
  });
});
