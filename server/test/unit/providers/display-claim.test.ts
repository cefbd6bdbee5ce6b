import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { claimDisplay } from '../../../src/providers/xvnc/displays.js';

describe('host-wide X display claims (several nodes on one host)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-claim-'));
  afterEach(() => {
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives a display to one starter at a time, and again once released', () => {
    const first = claimDisplay(30, dir);
    expect(first).toBeTypeOf('function');
    // another node on the host looking at the same number
    expect(claimDisplay(30, dir)).toBeUndefined();
    expect(claimDisplay(31, dir)).toBeTypeOf('function');
    first!();
    expect(claimDisplay(30, dir)).toBeTypeOf('function');
  });

  it('takes over a claim left by a starter that died, once it is old', () => {
    expect(claimDisplay(40, dir)).toBeTypeOf('function');
    expect(claimDisplay(40, dir, Date.now() + 60_000)).toBeUndefined();
    expect(claimDisplay(40, dir, Date.now() + 10 * 60_000)).toBeTypeOf('function');
  });
});
