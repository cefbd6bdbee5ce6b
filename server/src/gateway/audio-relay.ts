import type { Logger } from 'pino';
import { AUDIO_CODEC_ID, type AudioCodec } from '@vdi/shared';
import type { Broker } from '../broker/broker.js';
import type { AudioCapture } from '../providers/types.js';
import { ProviderError } from '../providers/types.js';
import client from 'prom-client';
import { registry } from './metrics.js';
import type { VdiSocket } from './viewer-socket.js';

const audioMetrics = {
  packets: new client.Counter({
    name: 'vdi_audio_packets_sent_total',
    help: 'Sound packets (10 ms each) sent to viewers',
    registers: [registry],
  }),
  dropped: new client.Counter({
    name: 'vdi_audio_packets_dropped_total',
    help: 'Sound packets a viewer missed because its connection was still busy with earlier messages',
    registers: [registry],
  }),
};

/** a desktop's capture in one codec, and the viewers it goes to */
interface Feed {
  capture: AudioCapture;
  sockets: Set<VdiSocket>;
}

/**
 * The desktops' sound to their viewers (issue 13). One capture per desktop and codec, shared
 * by the viewers that asked for it (a session's own viewers: never shadows), started with the
 * first and closed with the last. A packet goes to a viewer only when its connection has
 * taken the previous message (the transport is writable); otherwise that viewer misses it:
 * sound is dropped when behind, never queued (decision 13), and the browser's jitter buffer
 * covers the gap.
 */
export class AudioRelay {
  private readonly feeds = new Map<string, Feed>();
  private readonly bySocket = new Map<VdiSocket, string>();

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
  ) {}

  /** Starts sending `desktopId`'s sound in `codec` to the socket (instead of what it had). */
  async subscribe(socket: VdiSocket, desktopId: string, codec: AudioCodec): Promise<void> {
    this.unsubscribe(socket);
    const key = `${desktopId}:${codec}`;
    let feed = this.feeds.get(key);
    if (!feed) {
      const desktop = await this.broker.desktop(desktopId);
      if (!desktop?.handle)
        throw new ProviderError('AUDIO_UNAVAILABLE', 'the desktop is not running');
      const pool = await this.broker.pool(desktop.pool_id);
      const provider = this.broker.provider(pool.provider);
      if (!provider.audio)
        throw new ProviderError(
          'AUDIO_UNAVAILABLE',
          `sound is not supported for ${pool.provider === 'qemu' ? 'virtual machines' : `${pool.provider} desktops`}`,
        );
      // another subscribe may have started it while we looked the desktop up
      feed = this.feeds.get(key);
      if (!feed) {
        const capture = provider.audio(desktop.handle).open(codec);
        const made: Feed = { capture, sockets: new Set() };
        feed = made;
        this.feeds.set(key, made);
        const id = AUDIO_CODEC_ID[codec];
        capture.on('packet', (p) => {
          const msg = Buffer.allocUnsafe(p.length + 1);
          msg[0] = id;
          p.copy(msg, 1);
          for (const s of made.sockets) {
            if (!s.connected || !s.conn.transport.writable) {
              audioMetrics.dropped.inc();
              continue;
            }
            audioMetrics.packets.inc();
            s.emit('audio', msg);
          }
        });
        capture.on('end', (reason) => {
          this.log.info({ desktopId, codec, reason }, 'desktop sound ended');
          if (this.feeds.get(key) === made) this.feeds.delete(key);
          for (const s of made.sockets) this.bySocket.delete(s);
        });
        this.log.info({ desktopId, codec }, 'desktop sound started');
      }
    }
    feed.sockets.add(socket);
    this.bySocket.set(socket, key);
  }

  /** Stops the socket's sound; the capture closes with its last viewer. */
  unsubscribe(socket: VdiSocket): void {
    const key = this.bySocket.get(socket);
    if (!key) return;
    this.bySocket.delete(socket);
    const feed = this.feeds.get(key);
    if (!feed) return;
    feed.sockets.delete(socket);
    if (feed.sockets.size === 0) {
      this.feeds.delete(key);
      feed.capture.close();
    }
  }

  /** how many captures run (tests, metrics) */
  get captures(): number {
    return this.feeds.size;
  }

  close(): void {
    for (const f of this.feeds.values()) f.capture.close();
    this.feeds.clear();
    this.bySocket.clear();
  }
}
