// Memory with a stalled viewer (issue 5: "gateway memory bounded per viewer, no growth with a
// stalled viewer"): while the full-screen animation runs, this server's viewer page watches
// alone for a while, then a second viewer joins the same session over Socket.IO that takes
// frames but never acknowledges one. The gateway's resident memory is sampled every second
// throughout, and the page's painted frames are counted with and without the stalled viewer.
// (The proper test of this is an integration test; this is the bench's look at it.)
import { io } from 'socket.io-client';
import { vdiParser } from '@vdi/shared';
import { rssMiB } from './metrics.mjs';

const RSS_PERIOD_MS = 1_000;
const ATTACH_TIMEOUT_MS = 15_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

/** A Socket.IO viewer that attaches to a session, counts what it gets and never acks. */
async function stalledViewer(srv) {
  const cookie = `${srv.cookies[0].name}=${srv.cookies[0].value}`;
  const socket = io(srv.url, {
    parser: vdiParser,
    transports: ['websocket'],
    extraHeaders: { Cookie: cookie },
    reconnection: false,
  });
  const got = { frames: 0, bytes: 0 };
  socket.on('frame', (data) => {
    got.frames++;
    got.bytes += data.byteLength ?? data.length ?? 0;
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('the stalled viewer could not connect')),
      ATTACH_TIMEOUT_MS,
    );
    socket.once('connect', () => {
      socket.emit('attach', { sessionId: srv.sessionId }, (res) => {
        clearTimeout(timer);
        if (res?.ok) resolve();
        else reject(new Error(`the stalled viewer could not attach: ${res?.code} ${res?.message}`));
      });
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  return { got, close: () => socket.close() };
}

/**
 * @param {{ desk: any, srv: any, workload: any, openViewer: () => Promise<any>, seconds: number }} o
 *   workload: the animation to run; seconds: each half (alone, then with the stalled viewer)
 */
export async function stallCheck({ desk, srv, workload, openViewer, seconds }) {
  const state = await workload.setup(desk);
  try {
    const viewer = await openViewer();
    let stalled;
    try {
      await workload.start(state, 2 * seconds + 2, desk);
      const t0 = Date.now();
      const rss = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          rss.push({ t: (Date.now() - t0) / 1000, mib: rssMiB(srv.pid) });
          await sleep(RSS_PERIOD_MS);
        }
      })();

      await sleep(1000);
      await viewer.resetProbe();
      await sleep(seconds * 1000);
      const alone = await viewer.probe();

      stalled = await stalledViewer(srv);
      const joinedAt = (Date.now() - t0) / 1000;
      await viewer.resetProbe();
      await sleep(seconds * 1000);
      const withStalled = await viewer.probe();
      sampling = false;
      await sampler;
      await workload.pause(state);

      const after = rss.filter((r) => r.t >= joinedAt);
      return {
        workload: workload.id,
        secondsEach: seconds,
        paintsPerSecAlone: alone.paints / seconds,
        paintsPerSecWithStalled: withStalled.paints / seconds,
        stalledViewer: { ...stalled.got },
        gatewayRssMiB: {
          beforeJoin: rss.filter((r) => r.t < joinedAt).at(-1)?.mib ?? null,
          end: rss.at(-1)?.mib ?? null,
          max: Math.max(...rss.map((r) => r.mib)),
          slopeMiBPerSecWithStalled:
            after.length > 2
              ? slope(
                  after.map((r) => r.t),
                  after.map((r) => r.mib),
                )
              : null,
        },
        samples: rss,
      };
    } finally {
      stalled?.close();
      await viewer.close();
    }
  } finally {
    await workload.teardown(desk, state);
  }
}
