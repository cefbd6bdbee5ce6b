import type { Logger } from 'pino';
import client from 'prom-client';
import { MIC_BYTES_PER_SEC } from '@vdi/shared';
import type { Broker } from '../broker/broker.js';
import type { Clock } from '../clock.js';
import type { AudioSink } from '../providers/types.js';
import { ProviderError } from '../providers/types.js';
import { registry } from './metrics.js';
import type { VdiSocket } from './viewer-socket.js';

const micMetrics = {
  bytes: new client.Counter({
    name: 'vdi_mic_bytes_total',
    help: 'Microphone PCM bytes written into desktops',
    registers: [registry],
  }),
  dropped: new client.Counter({
    name: 'vdi_mic_chunks_dropped_total',
    help: 'Microphone chunks dropped (faster than real time, or the desktop not taking them)',
    registers: [registry],
  }),
};

/** A viewer may send at most this many seconds of sound per second (jitter, then catch-up). */
const RATE_FACTOR = 2;
/** ...and this much at once, seconds (a burst after a hiccup on the network) */
const BURST_S = 0.5;

/** one viewer's microphone: where it goes, and its byte budget */
interface Mic {
  desktopId: string;
  /** undefined while it is being opened (chunks meanwhile are dropped) */
  sink: AudioSink | undefined;
  tokens: number;
  at: number;
  /** the desktop has no microphone: said once, then its chunks are dropped until a stop */
  refused?: boolean;
}

/**
 * The browsers' microphones to their desktops (issue 13's stretch goal). One sink per viewer
 * socket that sends `mic` chunks, opened on the first and closed by an empty chunk, a detach
 * or the socket going. A viewer gets a byte budget of twice real time (a token bucket on the
 * injected clock): a browser cannot make the gateway write faster than a microphone talks,
 * and nothing is queued — a chunk over budget, or one the desktop cannot take now, is dropped.
 */
export class MicRelay {
  private readonly mics = new Map<VdiSocket, Mic>();

  constructor(
    private readonly broker: Broker,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * A chunk from a viewer of `desktopId` (an owner's viewer: the caller refuses shadows).
   * Resolves when it is written or dropped; rejects when the desktop has no microphone.
   */
  async chunk(socket: VdiSocket, desktopId: string, pcm: Buffer): Promise<void> {
    if (pcm.length === 0) return this.stop(socket);
    let mic = this.mics.get(socket);
    if (mic && mic.desktopId !== desktopId) {
      this.stop(socket);
      mic = undefined;
    }
    const now = this.clock.now();
    if (!mic) {
      mic = { desktopId, sink: undefined, tokens: MIC_BYTES_PER_SEC * BURST_S, at: now };
      this.mics.set(socket, mic);
      try {
        mic.sink = await this.open(desktopId);
      } catch (err) {
        mic.refused = true;
        throw err;
      }
      // stopped (or the socket gone) while it opened
      if (this.mics.get(socket) !== mic) {
        mic.sink.close();
        return;
      }
      this.log.info({ desktopId }, 'microphone started');
    }
    if (mic.refused) return;
    const rate = MIC_BYTES_PER_SEC * RATE_FACTOR;
    mic.tokens = Math.min(MIC_BYTES_PER_SEC * BURST_S, mic.tokens + ((now - mic.at) / 1000) * rate);
    mic.at = now;
    if (!mic.sink || pcm.length > mic.tokens) {
      micMetrics.dropped.inc();
      return;
    }
    mic.tokens -= pcm.length;
    if (mic.sink.write(pcm)) micMetrics.bytes.inc(pcm.length);
    else micMetrics.dropped.inc();
  }

  private async open(desktopId: string): Promise<AudioSink> {
    const desktop = await this.broker.desktop(desktopId);
    if (!desktop?.handle)
      throw new ProviderError('AUDIO_UNAVAILABLE', 'the desktop is not running');
    const pool = await this.broker.pool(desktop.pool_id);
    const source = this.broker.provider(pool.provider).audio?.(desktop.handle);
    if (!source?.microphone)
      throw new ProviderError(
        'AUDIO_UNAVAILABLE',
        `no microphone for ${pool.provider === 'qemu' ? 'virtual machines' : `${pool.provider} desktops`}`,
      );
    return source.microphone();
  }

  /** The viewer's microphone is off (an empty chunk, a detach, the socket gone). */
  stop(socket: VdiSocket): void {
    const mic = this.mics.get(socket);
    if (!mic) return;
    this.mics.delete(socket);
    if (mic.sink) {
      mic.sink.close();
      this.log.info({ desktopId: mic.desktopId }, 'microphone stopped');
    }
  }

  /** how many microphones are open (tests) */
  get count(): number {
    return this.mics.size;
  }

  close(): void {
    for (const m of this.mics.values()) m.sink?.close();
    this.mics.clear();
  }
}
