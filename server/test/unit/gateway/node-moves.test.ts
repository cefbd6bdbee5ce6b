/**
 * NodeMoves: the node moving a desktop tells the other gateway nodes each step, and those
 * whose viewers watch the desktop move their own link with it. The cluster adapter is faked
 * here by a bus that hands each event to the other nodes' listeners and gathers their
 * answers (the real one, Redis, is in e2e/vm-migration-nodes.test.ts); the streams are
 * fakes that record what was asked of them.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { NodeMoves, type NodeBus } from '../../../src/gateway/node-moves.js';
import type { DesktopHandle } from '../../../src/providers/types.js';
import type { RfbEndpoint } from '../../../src/rfb/endpoint.js';
import type { LinkMove } from '../../../src/stream/stream-manager.js';
import { ManualTimers } from '../stream/helpers/manual-timers.js';

type Listener = (m: unknown, ack: (ok: boolean) => void) => void;

/** Every node's listeners; an event from one reaches the others, as serverSideEmit does. */
class FakeCluster {
  private readonly nodes: Array<Map<string, Listener>> = [];
  /** a node that never answers (the adapter's timeout then rejects) */
  silent = new Set<number>();

  bus(): NodeBus {
    const me = this.nodes.length;
    const listeners = new Map<string, Listener>();
    this.nodes.push(listeners);
    return {
      on: (event: string, l: Listener) => listeners.set(event, l),
      serverSideEmitWithAck: (event: string, m: unknown) => {
        const others = this.nodes.filter((_, i) => i !== me);
        if (this.nodes.some((_, i) => i !== me && this.silent.has(i)))
          return Promise.reject(new Error('operation has timed out'));
        return Promise.all(
          others.map((n) => new Promise<boolean>((resolve) => n.get(event)!(m, resolve))),
        );
      },
    } as NodeBus;
  }
}

/** A stream manager's side of a move, recording the steps it was asked to take. */
function fakeStreams(watched: string[], steps: string[], label: string) {
  const endpoints: RfbEndpoint[] = [];
  return {
    endpoints,
    get: (id: string) => (watched.includes(id) ? ({} as never) : undefined),
    prepareMove: (id: string, endpoint: RfbEndpoint): Promise<LinkMove | undefined> => {
      if (!watched.includes(id)) return Promise.resolve(undefined);
      endpoints.push(endpoint);
      steps.push(`${label}:prepare`);
      return Promise.resolve({
        holdInput: () => {
          steps.push(`${label}:hold`);
          return Promise.resolve();
        },
        switchOver: () => {
          steps.push(`${label}:switch`);
          return Promise.resolve({ changedPixels: 7 });
        },
        abort: (reason: string) => void steps.push(`${label}:abort ${reason}`),
      });
    },
  };
}

const log = pino({ level: 'silent' });
const handle: DesktopHandle = { vncPath: '/run/h2/d1.vnc' };
const destination = { endpoint: { kind: 'unix', path: '/run/h2/d1.vnc' } as RfbEndpoint, handle };
/** each node finds the endpoint from the handle its own way */
const endpointOf = (label: string) => (provider: string, h: DesktopHandle) =>
  ({ kind: 'unix', path: `${label}:${provider}:${String(h.vncPath)}` }) as RfbEndpoint;

function twoNodes(watchedOn: [string[], string[]], timers = new ManualTimers()) {
  const cluster = new FakeCluster();
  const steps: string[] = [];
  const streams = [
    fakeStreams(watchedOn[0], steps, 'A'),
    fakeStreams(watchedOn[1], steps, 'B'),
  ] as const;
  const nodes = [
    new NodeMoves(cluster.bus(), streams[0], endpointOf('A'), log, timers.schedule),
    new NodeMoves(cluster.bus(), streams[1], endpointOf('B'), log, timers.schedule),
  ] as const;
  for (const n of nodes) n.tellPeers();
  return { cluster, steps, streams, nodes, timers };
}

describe('NodeMoves', () => {
  it('moves the links of every node that views the desktop, step by step', async () => {
    const { steps, streams, nodes } = twoNodes([['d1'], ['d1']]);
    const link = await nodes[0].prepareMove('d1', destination, 'qemu');
    expect(link).toBeDefined();
    // node B found the destination through its own provider, from the handle
    expect(streams[1].endpoints).toEqual([{ kind: 'unix', path: 'B:qemu:/run/h2/d1.vnc' }]);
    expect(streams[0].endpoints).toEqual([destination.endpoint]);
    await link!.holdInput();
    expect(await link!.switchOver()).toEqual({ changedPixels: 7 });
    expect(steps).toEqual(['A:prepare', 'B:prepare', 'A:hold', 'B:hold', 'A:switch', 'B:switch']);
  });

  it('moves the viewers of another node when the moving node has none', async () => {
    const { steps, nodes } = twoNodes([[], ['d1']]);
    const link = await nodes[0].prepareMove('d1', destination, 'qemu');
    expect(link).toBeDefined();
    await link!.holdInput();
    await link!.switchOver();
    expect(steps).toEqual(['B:prepare', 'B:hold', 'B:switch']);
  });

  it('tells the others of an abandoned move: their viewers stay on the source', async () => {
    const { steps, nodes } = twoNodes([['d1'], ['d1']]);
    const link = await nodes[0].prepareMove('d1', destination, 'qemu');
    link!.abort('the destination died');
    await new Promise((r) => setImmediate(r));
    expect(steps).toEqual([
      'A:prepare',
      'B:prepare',
      'A:abort the destination died',
      'B:abort the destination died',
    ]);
  });

  it('nothing to move when no node views the desktop', async () => {
    const { steps, nodes } = twoNodes([[], []]);
    expect(await nodes[0].prepareMove('d1', destination, 'qemu')).toBeUndefined();
    expect(steps).toEqual([]);
  });

  it('without a cluster adapter only its own link moves', async () => {
    const cluster = new FakeCluster();
    const steps: string[] = [];
    const mine = new NodeMoves(
      cluster.bus(),
      fakeStreams(['d1'], steps, 'A'),
      endpointOf('A'),
      log,
    );
    new NodeMoves(cluster.bus(), fakeStreams(['d1'], steps, 'B'), endpointOf('B'), log);
    const link = await mine.prepareMove('d1', destination, 'qemu');
    await link!.switchOver();
    expect(steps).toEqual(['A:prepare', 'A:switch']);
  });

  it('a node that does not answer leaves the move going for the others', async () => {
    const { cluster, steps, nodes } = twoNodes([['d1'], ['d1']]);
    cluster.silent.add(1);
    const link = await nodes[0].prepareMove('d1', destination, 'qemu');
    await link!.switchOver();
    expect(steps).toEqual(['A:prepare', 'A:switch']);
  });

  it('a joined move expires when its leader goes silent: the viewers stay on the source', async () => {
    const { steps, nodes, timers } = twoNodes([[], ['d1']]);
    const link = await nodes[0].prepareMove('d1', destination, 'qemu');
    expect(timers.count).toBe(1);
    timers.fireAll();
    expect(steps).toEqual(['B:prepare', 'B:abort the node leading the move went silent']);
    // a late switch from the leader is answered "not taking part" and does nothing
    await link!.switchOver();
    expect(steps).toHaveLength(2);
  });

  it('refuses malformed events from another node', async () => {
    const cluster = new FakeCluster();
    const steps: string[] = [];
    const bus = cluster.bus();
    new NodeMoves(cluster.bus(), fakeStreams(['d1'], steps, 'B'), endpointOf('B'), log);
    const answers = await bus.serverSideEmitWithAck('move:prepare', {
      moveId: 'not-a-uuid',
      desktopId: 'd1',
      provider: 'qemu',
      handle,
    });
    expect(answers).toEqual([false]);
    expect(
      await bus.serverSideEmitWithAck('move:step', {
        moveId: '6f1c1d43-63c4-4f55-9b38-1f6bfa0c9a0e',
        step: 'switch',
      }),
    ).toEqual([false]);
    expect(steps).toEqual([]);
  });
});
