import { describe, expect, it } from 'vitest';
import { FrameQueue, type FrameSink } from '../src/viewer/frame-queue';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A drawer that records what happened, in order. */
function recorder() {
  const log: string[] = [];
  let clock = 0;
  const sink: FrameSink<string> = {
    draw: (f) => void log.push(`draw ${f}`),
    ack: (seq, ms) => void log.push(`ack ${seq} ${ms}`),
    discard: (f) => void log.push(`discard ${f}`),
    fail: (seq) => void log.push(`fail ${seq}`),
  };
  return { log, sink, now: () => clock, tick: (ms: number) => (clock += ms) };
}

describe('FrameQueue', () => {
  it('draws frames in arrival order even when later ones decode first', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const a = deferred<string>();
    const b = deferred<string>();
    const c = deferred<string>();
    q.push(1, a.promise);
    q.push(2, b.promise);
    q.push(3, c.promise);
    c.resolve('C');
    b.resolve('B');
    await Promise.resolve();
    expect(r.log).toEqual([]); // frame 1 still decoding: nothing may be drawn
    r.tick(7);
    a.resolve('A');
    await q.idle();
    expect(r.log).toEqual(['draw A', 'ack 1 7', 'draw B', 'ack 2 7', 'draw C', 'ack 3 7']);
  });

  it('acknowledges a frame only after it is drawn', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const a = deferred<string>();
    q.push(10, a.promise);
    await Promise.resolve();
    expect(r.log).toEqual([]);
    a.resolve('A');
    await q.idle();
    expect(r.log.indexOf('draw A')).toBeLessThan(r.log.findIndex((l) => l.startsWith('ack 10')));
  });

  it('counts pending frames', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const a = deferred<string>();
    q.push(1, a.promise);
    q.push(2, Promise.resolve('B'));
    expect(q.pending).toBe(2);
    a.resolve('A');
    await q.idle();
    expect(q.pending).toBe(0);
  });

  it('still acknowledges (and reports) a frame whose decoding failed, and goes on', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const a = deferred<string>();
    q.push(1, a.promise);
    q.push(2, Promise.resolve('B'));
    a.reject(new Error('bad png'));
    await q.idle();
    expect(r.log).toEqual(['fail 1', 'ack 1 0', 'draw B', 'ack 2 0']);
  });

  it('survives a drawer that throws', async () => {
    const r = recorder();
    const q = new FrameQueue(
      {
        ...r.sink,
        draw: (f) => {
          if (f === 'A') throw new Error('canvas lost');
          r.log.push(`draw ${f}`);
        },
      },
      r.now,
    );
    q.push(1, Promise.resolve('A'));
    q.push(2, Promise.resolve('B'));
    await q.idle();
    expect(r.log).toEqual(['fail 1', 'ack 1 0', 'draw B', 'ack 2 0']);
  });

  it('after reset, frames of the old connection are neither drawn nor acknowledged', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const old = deferred<string>();
    q.push(5, old.promise);
    q.reset(); // reconnect
    q.push(1, Promise.resolve('K')); // the new connection's keyframe
    old.resolve('OLD');
    await q.idle();
    expect(r.log).toEqual(['discard OLD', 'draw K', 'ack 1 0']);
  });

  it('measures arrival → drawn time', async () => {
    const r = recorder();
    const q = new FrameQueue(r.sink, r.now);
    const a = deferred<string>();
    q.push(1, a.promise, r.now());
    r.tick(12);
    a.resolve('A');
    await q.idle();
    expect(r.log).toContain('ack 1 12');
  });
});
