import { describe, expect, it } from 'vitest';
import { KeyedMutex } from '../../../src/broker/keyed-mutex.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('KeyedMutex', () => {
  it('runs work for one key one at a time, in call order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let inside = 0;
    let most = 0;
    await Promise.all(
      [1, 2, 3, 4].map((n) =>
        m.run('k', async () => {
          inside++;
          most = Math.max(most, inside);
          log.push(`start ${n}`);
          await tick();
          log.push(`end ${n}`);
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
    expect(log).toEqual([
      'start 1',
      'end 1',
      'start 2',
      'end 2',
      'start 3',
      'end 3',
      'start 4',
      'end 4',
    ]);
  });

  it('lets different keys run at the same time', async () => {
    const m = new KeyedMutex();
    let inside = 0;
    let most = 0;
    await Promise.all(
      ['a', 'b', 'c'].map((k) =>
        m.run(k, async () => {
          inside++;
          most = Math.max(most, inside);
          await tick();
          inside--;
        }),
      ),
    );
    expect(most).toBe(3);
  });

  it('a failing holder releases the key and its error reaches only its caller', async () => {
    const m = new KeyedMutex();
    const first = m.run('k', async () => {
      await tick();
      throw new Error('boom');
    });
    const second = m.run('k', async () => 'second ran');
    await expect(first).rejects.toThrow('boom');
    await expect(second).resolves.toBe('second ran');
    // and the key is usable afterwards
    await expect(m.run('k', async () => 42)).resolves.toBe(42);
  });
});
