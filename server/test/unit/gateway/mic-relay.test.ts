import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MIC_BYTES_PER_SEC, MicChunk } from '@vdi/shared';
import type { Broker } from '../../../src/broker/broker.js';
import { ManualClock } from '../../../src/clock.js';
import { MicRelay } from '../../../src/gateway/mic-relay.js';
import type { VdiSocket } from '../../../src/gateway/viewer-socket.js';
import { ProviderError, type AudioSink } from '../../../src/providers/types.js';

/*
 * The microphone relay's rules, with a sink that records what it is given: the first chunk
 * opens the desktop's microphone, a viewer cannot write faster than real time (twice, with
 * a half-second burst), an empty chunk closes it, a desktop without one is said once. The
 * real desktop's PulseAudio hears it in test/e2e/viewer-mic.test.ts.
 */

class RecordingSink implements AudioSink {
  bytes = 0;
  closed = false;
  full = false;
  write(pcm: Buffer): boolean {
    if (this.full) return false;
    this.bytes += pcm.length;
    return true;
  }
  close(): void {
    this.closed = true;
  }
}

/** A broker that knows two desktops: `d1` and `d2` with a microphone, `vm` without. */
function fakeBroker(sinks: Record<string, RecordingSink[]>, opened: string[]): Broker {
  return {
    desktop: async (id: string) => ({ id, pool_id: id === 'vm' ? 'qemu' : 'xvnc', handle: { id } }),
    pool: async (id: string) => ({ id, provider: id }),
    provider: (kind: string) => ({
      audio: (h: { id: string }) => ({
        open: () => {
          throw new Error('not used');
        },
        ...(kind === 'xvnc'
          ? {
              microphone: () => {
                opened.push(h.id);
                const s = new RecordingSink();
                (sinks[h.id] ??= []).push(s);
                return s;
              },
            }
          : {}),
      }),
    }),
  } as unknown as Broker;
}

const log = pino({ level: 'silent' });
const socket = () => ({}) as VdiSocket;
/** 20 ms of microphone PCM, as the viewer sends it */
const chunk = () => Buffer.alloc(MIC_BYTES_PER_SEC / 50);

describe('microphone relay', () => {
  it('opens on the first chunk and writes no faster than twice real time', async () => {
    const sinks: Record<string, RecordingSink[]> = {};
    const clock = new ManualClock();
    const relay = new MicRelay(fakeBroker(sinks, []), clock, log);
    const s = socket();
    // a browser that sends 5 s of sound at once: half a second gets through
    for (let i = 0; i < 250; i++) await relay.chunk(s, 'd1', chunk());
    expect(sinks.d1).toHaveLength(1);
    expect(sinks.d1![0]!.bytes).toBe(MIC_BYTES_PER_SEC / 2);
    // in real time (20 ms per 20 ms chunk), every chunk goes through
    clock.advance(500);
    const before = sinks.d1![0]!.bytes;
    for (let i = 0; i < 100; i++) {
      clock.advance(20);
      await relay.chunk(s, 'd1', chunk());
    }
    expect(sinks.d1![0]!.bytes - before).toBe(100 * chunk().length);
    expect(relay.count).toBe(1);
  });

  it('an empty chunk, or the viewer going, closes it; the next chunk opens it again', async () => {
    const sinks: Record<string, RecordingSink[]> = {};
    const opened: string[] = [];
    const relay = new MicRelay(fakeBroker(sinks, opened), new ManualClock(), log);
    const s = socket();
    await relay.chunk(s, 'd1', chunk());
    await relay.chunk(s, 'd1', Buffer.alloc(0));
    expect(sinks.d1![0]!.closed).toBe(true);
    expect(relay.count).toBe(0);
    await relay.chunk(s, 'd1', chunk());
    relay.stop(s);
    expect(sinks.d1![1]!.closed).toBe(true);
    // a socket attached to another desktop: the old one's microphone closes
    await relay.chunk(s, 'd1', chunk());
    await relay.chunk(s, 'd2', chunk());
    expect(sinks.d1![2]!.closed).toBe(true);
    expect(sinks.d2![0]!.bytes).toBe(chunk().length);
    expect(opened).toEqual(['d1', 'd1', 'd1', 'd2']);
  });

  it('a desktop without a microphone is said once; its chunks are dropped until it stops', async () => {
    const opened: string[] = [];
    const relay = new MicRelay(fakeBroker({}, opened), new ManualClock(), log);
    const s = socket();
    const err = await relay.chunk(s, 'vm', chunk()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).code).toBe('AUDIO_UNAVAILABLE');
    expect((err as Error).message).toMatch(/virtual machines/);
    for (let i = 0; i < 10; i++)
      await expect(relay.chunk(s, 'vm', chunk())).resolves.toBeUndefined();
    expect(opened).toEqual([]);
  });

  it('a chunk the desktop cannot take now is dropped, not queued', async () => {
    const sinks: Record<string, RecordingSink[]> = {};
    const clock = new ManualClock();
    const relay = new MicRelay(fakeBroker(sinks, []), clock, log);
    const s = socket();
    await relay.chunk(s, 'd1', chunk());
    sinks.d1![0]!.full = true;
    clock.advance(20);
    await relay.chunk(s, 'd1', chunk());
    sinks.d1![0]!.full = false;
    clock.advance(20);
    await relay.chunk(s, 'd1', chunk());
    expect(sinks.d1![0]!.bytes).toBe(2 * chunk().length);
  });

  it('the event schema takes whole 16-bit samples up to 100 ms, nothing else', () => {
    expect(MicChunk.safeParse(new Uint8Array(640)).success).toBe(true);
    expect(MicChunk.safeParse(Buffer.alloc(MIC_BYTES_PER_SEC / 10)).success).toBe(true);
    expect(MicChunk.safeParse(Buffer.alloc(MIC_BYTES_PER_SEC / 10 + 2)).success).toBe(false);
    expect(MicChunk.safeParse(new Uint8Array(641)).success).toBe(false);
    expect(MicChunk.safeParse('pcm').success).toBe(false);
    expect(MicChunk.safeParse([1, 2]).success).toBe(false);
  });
});
