/**
 * StreamManager: a desktop's link can be replaced (lost, then opened again). Timers and
 * references of the old link must never touch the new one. The linger timers run on a
 * scheduler the test fires by hand, so nothing waits for wall-clock time.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { StreamManager } from '../../../src/stream/stream-manager.js';
import { FakeRfbServer, waitFor, type FakeConnection } from '../rfb/helpers/fake-server.js';
import * as w from '../rfb/helpers/server-wire.js';
import { ManualTimers } from './helpers/manual-timers.js';

let server: FakeRfbServer;
let timers: ManualTimers;
let manager: StreamManager;
const lost: string[] = [];

beforeEach(async () => {
  server = await FakeRfbServer.start();
  timers = new ManualTimers();
  lost.length = 0;
  manager = new StreamManager(
    new ManualClock(),
    pino({ level: 'silent' }),
    {
      cursor: () => undefined,
      clipboard: () => undefined,
      lost: (_id, reason) => lost.push(reason),
    },
    { setTimer: timers.schedule, rfb: { keepaliveMs: 0 } },
  );
});

afterEach(async () => {
  manager.closeAll();
  await server.close();
});

/** Acquire the desktop's stream while the fake server plays a desktop of 32×32. */
async function acquire(): Promise<{
  stream: Awaited<ReturnType<StreamManager['acquire']>>;
  conn: FakeConnection;
}> {
  const pending = manager.acquire('d1', server.endpoint);
  const conn = await server.accept();
  await conn.handshake(32, 32);
  conn.write(w.update([w.raw(0, 0, 32, 32, w.solid(32, 32, 5, 5, 5))]));
  return { stream: await pending, conn };
}

describe('a replaced desktop link', () => {
  it("keeps the new link when the old link's linger timer fires", async () => {
    const first = await acquire();
    manager.release('d1', first.stream); // last viewer left: the old link lingers
    expect(timers.count).toBe(1);
    first.conn.socket.destroy(); // ...and is lost meanwhile
    await waitFor(() => lost.length === 1, 2000, 'the old link to be lost');

    const second = await acquire(); // a viewer comes back: a new link
    timers.fireAll(); // whatever the old link left behind runs now

    expect(manager.get('d1')).toBe(second.stream);
    // the new link still carries input and pixels
    expect(second.stream.input({ kind: 'key', keysym: 0x61, down: true })).toBe(true);
    const key = await second.conn.readUntil('KeyEvent');
    expect(key.message).toMatchObject({ keysym: 0x61, down: true });
    expect(second.conn.socket.destroyed).toBe(false);
  });

  it('ignores a release of the old link (a thumbnail that finished late)', async () => {
    const first = await acquire();
    first.conn.socket.destroy();
    await waitFor(() => lost.length === 1, 2000, 'the old link to be lost');
    const second = await acquire();
    manager.release('d1', first.stream); // the old reference comes back now
    expect(timers.count).toBe(0); // the new link, still in use, does not start to linger
    timers.fireAll();
    expect(manager.get('d1')).toBe(second.stream);
  });

  it('closes a link whose last viewer left once its linger time is up', async () => {
    const first = await acquire();
    manager.release('d1', first.stream);
    timers.fireAll();
    expect(manager.get('d1')).toBeUndefined();
    await first.conn.closed;
    expect(lost).toEqual([]); // closed on purpose, not lost
  });
});
