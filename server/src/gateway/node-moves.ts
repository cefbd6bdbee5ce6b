import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { DesktopLinks } from '../broker/migration.js';
import type { DesktopHandle, MoveDestination } from '../providers/types.js';
import type { RfbEndpoint } from '../rfb/endpoint.js';
import type { LinkMove, StreamManager } from '../stream/stream-manager.js';
import { realTimer, type SetTimer, type TimerHandle } from '../stream/timer.js';

/**
 * What one gateway node tells the others about a desktop's move (Socket.IO server-side
 * events through the cluster adapter). Each answers whether it took part: `prepare` opened
 * a second link to the destination for its viewers, a step was done.
 */
export interface NodeMoveEvents {
  'move:prepare': (m: MovePrepare, ack: (prepared: boolean) => void) => void;
  'move:step': (m: MoveStep, ack: (done: boolean) => void) => void;
}

const movePrepare = z.object({
  moveId: z.string().uuid(),
  desktopId: z.string().min(1).max(200),
  provider: z.string().min(1).max(64),
  handle: z.record(z.string(), z.unknown()),
});
type MovePrepare = z.infer<typeof movePrepare>;

const moveStep = z.object({
  moveId: z.string().uuid(),
  step: z.enum(['hold', 'switch', 'abort']),
  reason: z.string().max(2000).optional(),
});
type MoveStep = z.infer<typeof moveStep>;

/** The server-side side of Socket.IO that the moves use (the gateway's server). */
export interface NodeBus {
  on<E extends keyof NodeMoveEvents>(event: E, listener: NodeMoveEvents[E]): unknown;
  serverSideEmitWithAck(event: 'move:prepare', m: MovePrepare): Promise<boolean[]>;
  serverSideEmitWithAck(event: 'move:step', m: MoveStep): Promise<boolean[]>;
}

/**
 * How long a node keeps a move another node leads without hearing its end, ms: a moving
 * node that died mid-move must not leave this node's viewers' input held for good. Longer
 * than a move may take (MIGRATION_TIMEOUT_MS' default is 180 s).
 */
const PEER_MOVE_MS = 5 * 60_000;

/**
 * Keeps every gateway node's viewers attached across a desktop's move (issue 12, decision
 * 12). The node that moves the desktop prepares its own stream's second link and tells the
 * other nodes, which do the same for their viewers of the desktop, each reaching the
 * destination its own way (from the destination's handle, through its own provider: a unix
 * socket on one machine, an LXD exec relay across members). Every step (hold input, switch,
 * abort) goes to all of them. Without a cluster adapter (one node) only the local stream is
 * moved.
 *
 * A node that does not answer in time (the adapter's request timeout) is left out: its
 * viewers lose their link at the switch and attach again, as before this existed.
 */
export class NodeMoves implements DesktopLinks {
  /** moves other nodes lead, in which this node's viewers take part */
  private readonly joined = new Map<string, { link: LinkMove; expiry: TimerHandle }>();
  private clustered = false;

  constructor(
    private readonly bus: NodeBus,
    private readonly streams: Pick<StreamManager, 'prepareMove' | 'get'>,
    /** where a desktop of this provider kind and handle answers, from this node */
    private readonly endpointOf: (provider: string, handle: DesktopHandle) => RfbEndpoint,
    private readonly log: Logger,
    /** schedules the expiry of a joined move; tests pass one they fire by hand */
    private readonly setTimer: SetTimer = realTimer,
  ) {
    bus.on('move:prepare', (m, ack) => void this.onPrepare(m, ack));
    bus.on('move:step', (m, ack) => void this.onStep(m, ack));
  }

  /** A cluster adapter is attached: moves are told to the other nodes from now on. */
  tellPeers(): void {
    this.clustered = true;
  }

  async prepareMove(
    desktopId: string,
    destination: MoveDestination,
    provider: string,
  ): Promise<LinkMove | undefined> {
    // this node's own viewers: a destination that does not answer fails the move
    const local = await this.streams.prepareMove(desktopId, destination.endpoint);
    if (!this.clustered) return local;
    const moveId = randomUUID();
    const log = this.log.child({ desktopId, moveId });
    const peers = (
      await this.ask(log, 'move:prepare', {
        moveId,
        desktopId,
        provider,
        handle: destination.handle,
      })
    ).filter(Boolean).length;
    if (peers > 0) log.info({ peers }, 'viewers on other nodes follow the move');
    if (!local && peers === 0) return undefined;
    const step = async (s: Omit<MoveStep, 'moveId'>) => {
      if (peers > 0) await this.ask(log, 'move:step', { moveId, ...s });
    };
    return {
      holdInput: async () => {
        await Promise.all([local?.holdInput(), step({ step: 'hold' })]);
      },
      switchOver: async () => {
        const [mine] = await Promise.all([local?.switchOver(), step({ step: 'switch' })]);
        return mine ?? { changedPixels: 0 };
      },
      abort: (reason: string) => {
        local?.abort(reason);
        void step({ step: 'abort', reason });
      },
    };
  }

  /** the other nodes' answers; none when they could not all be heard (logged) */
  private async ask(
    log: Logger,
    event: 'move:prepare' | 'move:step',
    m: MovePrepare | MoveStep,
  ): Promise<boolean[]> {
    try {
      return event === 'move:prepare'
        ? await this.bus.serverSideEmitWithAck(event, m as MovePrepare)
        : await this.bus.serverSideEmitWithAck(event, m as MoveStep);
    } catch (err) {
      log.warn({ err, event }, 'other gateway nodes did not all answer about the move');
      return [];
    }
  }

  /**
   * Another node's message about a move, checked: its reply function (a no-op when the
   * sender asked for none) and the message, or undefined (refused, and logged) if malformed.
   */
  private received<T>(
    schema: z.ZodType<T>,
    raw: unknown,
    ack: (ok: boolean) => void,
    what: string,
  ): { reply: (ok: boolean) => void; m: T | undefined } {
    const reply = typeof ack === 'function' ? ack : () => undefined;
    const parsed = schema.safeParse(raw);
    if (parsed.success) return { reply, m: parsed.data };
    this.log.warn({ issues: parsed.error.issues }, `a malformed ${what} from another node`);
    reply(false);
    return { reply, m: undefined };
  }

  private async onPrepare(raw: unknown, ack: (prepared: boolean) => void): Promise<void> {
    const { reply, m } = this.received(movePrepare, raw, ack, 'move');
    if (!m) return;
    // only a node whose viewers watch the desktop takes part
    if (!this.streams.get(m.desktopId)) return reply(false);
    const log = this.log.child({ desktopId: m.desktopId, moveId: m.moveId });
    try {
      const link = await this.streams.prepareMove(
        m.desktopId,
        this.endpointOf(m.provider, m.handle),
      );
      if (!link) return reply(false);
      const expiry = this.setTimer(() => {
        if (!this.joined.delete(m.moveId)) return;
        log.warn('no word of the move from the node leading it; the source keeps the link');
        link.abort('the node leading the move went silent');
      }, PEER_MOVE_MS);
      this.joined.set(m.moveId, { link, expiry });
      log.info('following a move another node leads');
      reply(true);
    } catch (err) {
      // this node's viewers lose their link at the switch and attach again; the move goes on
      log.warn({ err }, "could not open the destination's display for this node's viewers");
      reply(false);
    }
  }

  private async onStep(raw: unknown, ack: (done: boolean) => void): Promise<void> {
    const { reply, m } = this.received(moveStep, raw, ack, 'move step');
    if (!m) return;
    const j = this.joined.get(m.moveId);
    if (!j) return reply(false);
    try {
      if (m.step === 'hold') {
        await j.link.holdInput();
        return reply(true);
      }
      this.joined.delete(m.moveId);
      j.expiry.cancel();
      if (m.step === 'abort') j.link.abort(m.reason ?? 'the move failed');
      else await j.link.switchOver();
      reply(true);
    } catch (err) {
      this.log.warn({ err, moveId: m.moveId, step: m.step }, 'a move step failed on this node');
      reply(false);
    }
  }
}
