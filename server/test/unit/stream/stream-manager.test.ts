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

describe('a live migration switching to the destination display', () => {
  it("takes the destination's whole screen, not whatever the first update after the request left", async () => {
    const src = await acquire();
    const dest = await FakeRfbServer.start();
    try {
      // the destination's display before the guest's state arrived: QEMU's placeholder, of
      // another size than the guest's screen
      const preparing = manager.prepareMove('d1', dest.endpoint);
      const conn = await dest.accept();
      await conn.handshake(40, 24);
      conn.write(w.update([w.raw(0, 0, 40, 24, w.solid(40, 24, 90, 90, 90))]));
      const move = (await preparing)!;
      expect(move).toBeDefined();
      const reallocations = src.stream.reallocations;

      src.stream.input({ kind: 'pointer', x: 3, y: 4, buttons: 0 });
      const switching = move.switchOver();
      let req = await conn.readUntil('FramebufferUpdateRequest');
      const before = [...req.before];
      while (req.message.incremental) {
        req = await conn.readUntil('FramebufferUpdateRequest');
        before.push(...req.before);
      }
      // input first (it wakes QEMU's display refresh): the last pointer event, said again
      expect(before).toContainEqual(expect.objectContaining({ type: 'PointerEvent', x: 3, y: 4 }));
      // QEMU answers a full request at once with the cursor shape only...
      conn.write(w.update([w.cursor(0, 0, 1, 1, Buffer.from([1, 2, 3, 0]), Buffer.from([0x80]))]));
      // (the client has read it: it asks for the next update)
      await conn.readUntil('FramebufferUpdateRequest');
      // ...and at its next display refresh sends the guest's screen, drawn from the moved
      // state: the source's picture but for one square that changed since
      const screen = w.solid(32, 32, 5, 5, 5);
      for (let y = 16; y < 32; y++)
        for (let x = 0; x < 16; x++) screen.set([7, 7, 7, 0], (y * 32 + x) * 4);
      conn.write(w.update([w.desktopSize(32, 32), w.raw(0, 0, 32, 32, screen)]));
      const { changedPixels } = await switching;

      expect(changedPixels).toBe(16 * 16);
      expect(src.stream.width).toBe(32);
      expect(src.stream.height).toBe(32);
      // viewers never saw the placeholder: the mirror was not resized to it and back
      expect(src.stream.reallocations).toBe(reallocations);
      expect(src.stream.fb.equals(screen)).toBe(true);
      // the source's link is closed; the destination's carries input now
      await src.conn.closed;
      expect(src.stream.input({ kind: 'key', keysym: 0x62, down: true })).toBe(true);
      expect((await conn.readUntil('KeyEvent')).message).toMatchObject({ keysym: 0x62 });
    } finally {
      await dest.close();
    }
  });
});
