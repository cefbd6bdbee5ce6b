import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Codec, decodeFrame, encodeFrame, videoPayload } from '@vdi/shared';
import { decodeRects } from '../src/viewer/rect-decoder';
import { InflateStream } from '../src/viewer/inflate-stream';
import {
  VideoDecoders,
  VideoSkipped,
  VideoStateError,
  videoCapability,
} from '../src/viewer/video-decoders';

/** A stand-in for WebCodecs' VideoDecoder: the test makes it output or fail. */
class FakeDecoder {
  static all: FakeDecoder[] = [];
  static supported = true;
  state: 'unconfigured' | 'configured' | 'closed' = 'unconfigured';
  config: { codec: string } | undefined;
  chunks: { type: string; timestamp: number }[] = [];
  constructor(readonly init: { output(f: unknown): void; error(e: unknown): void }) {
    FakeDecoder.all.push(this);
  }
  static isConfigSupported(c: { codec: string }) {
    return Promise.resolve({ supported: FakeDecoder.supported, config: c });
  }
  configure(c: { codec: string }) {
    this.config = c;
    this.state = 'configured';
  }
  decode(chunk: { type: string; timestamp: number }) {
    if (this.state !== 'configured') throw new DOMException('not configured', 'InvalidStateError');
    this.chunks.push(chunk);
  }
  close() {
    this.state = 'closed';
  }
  /** the decoder returns a picture */
  emit(): FakeFrame {
    const f = new FakeFrame();
    this.init.output(f);
    return f;
  }
}
class FakeFrame {
  closed = false;
  close() {
    this.closed = true;
  }
}
class FakeChunk {
  type: string;
  timestamp: number;
  constructor(init: { type: string; timestamp: number }) {
    this.type = init.type;
    this.timestamp = init.timestamp;
  }
}

const chunk = (key: boolean, regionId = 0, codec = 'avc1.42C01E') =>
  videoPayload({ regionId, key, codec, data: Uint8Array.of(0, 0, 0, 1, key ? 0x65 : 0x41) });

beforeEach(() => {
  FakeDecoder.all = [];
  FakeDecoder.supported = true;
  vi.stubGlobal('VideoDecoder', FakeDecoder);
  vi.stubGlobal('EncodedVideoChunk', FakeChunk);
});
afterEach(() => vi.unstubAllGlobals());

describe('video capability', () => {
  it('announces H.264 only when WebCodecs says it decodes it', async () => {
    expect(await videoCapability()).toEqual(['avc1']);
    FakeDecoder.supported = false;
    expect(await videoCapability()).toEqual([]);
    vi.stubGlobal('VideoDecoder', undefined);
    expect(await videoCapability()).toEqual([]);
  });
});

describe('VideoDecoders', () => {
  it('decodes a region in order: pictures come back for their chunks', async () => {
    const failed = vi.fn();
    const v = new VideoDecoders({ failed });
    const a = v.decode(chunk(true));
    const b = v.decode(chunk(false));
    const [dec] = FakeDecoder.all;
    expect(dec!.config).toMatchObject({ codec: 'avc1.42C01E', optimizeForLatency: true });
    expect(dec!.chunks.map((c) => c.type)).toEqual(['key', 'delta']);
    expect(dec!.chunks[1]!.timestamp).toBeGreaterThan(dec!.chunks[0]!.timestamp);
    const fa = dec!.emit();
    const fb = dec!.emit();
    expect(await a).toBe(fa);
    expect(await b).toBe(fb);
    expect(v.decoded).toBe(2);
    expect(failed).not.toHaveBeenCalled();
  });

  it('a decoder error is reported once; waiting and later chunks are skipped, not drawn', async () => {
    const failed = vi.fn();
    const v = new VideoDecoders({ failed });
    const a = v.decode(chunk(true));
    const b = v.decode(chunk(false));
    FakeDecoder.all[0]!.init.error(new DOMException('Decoding error.', 'EncodingError'));
    await expect(a).rejects.toBeInstanceOf(VideoSkipped);
    await expect(b).rejects.toBeInstanceOf(VideoSkipped);
    expect(failed).toHaveBeenCalledExactlyOnceWith(0, 'EncodingError: Decoding error.');
    expect(FakeDecoder.all[0]!.state).toBe('closed');
    await expect(v.decode(chunk(true))).rejects.toBeInstanceOf(VideoSkipped);
    expect(FakeDecoder.all).toHaveLength(1); // no new decoder after a failure
    expect(failed).toHaveBeenCalledTimes(1);
  });

  it('refuses a delta before any key (a repaint restarts the region), and a new region ends the old', async () => {
    const v = new VideoDecoders({ failed: vi.fn() });
    await expect(v.decode(chunk(false))).rejects.toBeInstanceOf(VideoStateError);
    const old = v.decode(chunk(true, 3));
    void v.decode(chunk(true, 4));
    await expect(old).rejects.toBeInstanceOf(VideoSkipped);
    expect(FakeDecoder.all.map((d) => d.state)).toEqual(['closed', 'configured']);
  });

  it('in a frame: video rects become pictures, skipped ones are neither drawn nor failures', async () => {
    const failed = vi.fn();
    const v = new VideoDecoders({ failed });
    const wire = (key: boolean, seq: number) =>
      decodeFrame(
        encodeFrame({
          seq,
          fbWidth: 640,
          fbHeight: 480,
          sentAt: 0,
          flags: 0,
          quality: 0,
          rects: [{ x: 160, y: 96, w: 320, h: 240, codec: Codec.Video, payload: chunk(key) }],
        }),
      );
    const zlib = new InflateStream();
    const first = decodeRects(wire(true, 1), zlib, v);
    FakeDecoder.all[0]!.emit();
    expect((await first).rects[0]).toMatchObject({ kind: 'video', x: 160, y: 96, w: 320, h: 240 });
    const second = decodeRects(wire(false, 2), zlib, v);
    FakeDecoder.all[0]!.init.error(new Error('gone'));
    expect((await second).rects[0]).toMatchObject({ kind: 'skipped' });
    // a viewer that asked for no video gets a failed rect (and asks for a repaint)
    expect((await decodeRects(wire(true, 3), zlib)).rects[0]!.kind).toBe('failed');
  });
});
