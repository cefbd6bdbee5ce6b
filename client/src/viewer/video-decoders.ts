/**
 * Video regions (issue 10): the server sends a region in motion as H.264 chunks
 * (Codec.Video rects), one WebCodecs VideoDecoder per region. The browser says at attach
 * whether it can decode them (videoCapability); when a decoder fails, the server is told
 * and sends images from then on, and chunks still on their way are skipped (the server
 * repaints the region).
 */
import { readVideoPayload, type VideoCodecFamily } from '@vdi/shared';

/** The configuration asked about before announcing H.264: constrained baseline, level 3.1. */
export const VIDEO_PROBE_CODEC = 'avc1.42E01F';
/** A capability check that has not answered by then counts as "no video", ms. */
const CAPABILITY_TIMEOUT_MS = 1000;
/** Nominal time between pictures for chunk timestamps (the decoder only needs them to rise), µs. */
const CHUNK_STEP_US = 33_333;

/** What this browser decodes with WebCodecs, best first (empty: images only). */
export async function videoCapability(): Promise<VideoCodecFamily[]> {
  if (typeof VideoDecoder !== 'function') return []; // no WebCodecs, or not a secure context
  try {
    const check = VideoDecoder.isConfigSupported({
      codec: VIDEO_PROBE_CODEC,
      optimizeForLatency: true,
    });
    const timeout = new Promise<undefined>((r) =>
      setTimeout(() => r(undefined), CAPABILITY_TIMEOUT_MS),
    );
    const r = await Promise.race([check, timeout]);
    return r?.supported ? ['avc1'] : [];
  } catch {
    return [];
  }
}

/** A chunk that is not drawn because video stopped (a decoder failed, or a keyframe reset it). */
export class VideoSkipped extends Error {
  override name = 'VideoSkipped';
}

/** A chunk that cannot be decoded where it is (a delta with no decoder started): repaint. */
export class VideoStateError extends Error {
  readonly code = 'VIDEO_STATE';
  override name = 'VideoStateError';
}

interface Region {
  decoder: VideoDecoder;
  codec: string;
  /** chunks decoding, oldest first; pictures come out in the same order (no B-frames) */
  waiting: { resolve(f: VideoFrame): void; reject(e: Error): void }[];
  timestamp: number;
}

export interface VideoDecodersListener {
  /** a decoder failed: tell the server (images from now on) */
  failed(regionId: number, reason: string): void;
}

export class VideoDecoders {
  private readonly regions = new Map<number, Region>();
  private broken: string | undefined;
  /** chunks decoded into pictures, for the test hooks and the stats */
  decoded = 0;

  constructor(private readonly on: VideoDecodersListener) {}

  /** a decoder has failed: no more video for this page */
  get failed(): boolean {
    return this.broken !== undefined;
  }

  /**
   * Decode one chunk; resolves with its picture. Call it in frame order (chunks of a region
   * depend on the ones before).
   */
  decode(payload: Uint8Array): Promise<VideoFrame> {
    const chunk = readVideoPayload(payload);
    if (this.broken !== undefined) return Promise.reject(new VideoSkipped(this.broken));
    let region = this.regions.get(chunk.regionId);
    if (!region || region.codec !== chunk.codec) {
      if (!chunk.key) {
        return Promise.reject(
          new VideoStateError(`video region ${chunk.regionId}: a delta chunk before any key`),
        );
      }
      // the server runs one region at a time: a new one means the others ended
      this.reset();
      region = this.open(chunk.regionId, chunk.codec);
      if (!region) return Promise.reject(new VideoSkipped(this.broken));
    }
    const r = region;
    return new Promise<VideoFrame>((resolve, reject) => {
      r.waiting.push({ resolve, reject });
      try {
        r.decoder.decode(
          new EncodedVideoChunk({
            type: chunk.key ? 'key' : 'delta',
            timestamp: (r.timestamp += CHUNK_STEP_US),
            data: chunk.data,
          }),
        );
      } catch (err) {
        this.fail(chunk.regionId, err);
      }
    });
  }

  /** Close every decoder (a keyframe repaints everything; regions start again with a key). */
  reset(): void {
    for (const [id, r] of this.regions) this.close(id, r, new VideoSkipped('reset'));
  }

  private open(regionId: number, codec: string): Region | undefined {
    const region: Region = {
      codec,
      waiting: [],
      timestamp: 0,
      decoder: new VideoDecoder({
        output: (frame) => {
          const w = region.waiting.shift();
          if (w) {
            this.decoded++;
            w.resolve(frame);
          } else frame.close();
        },
        error: (err) => this.fail(regionId, err),
      }),
    };
    this.regions.set(regionId, region);
    try {
      region.decoder.configure({ codec, optimizeForLatency: true });
    } catch (err) {
      this.fail(regionId, err);
      return undefined;
    }
    return region;
  }

  private close(id: number, r: Region, why: Error): void {
    this.regions.delete(id);
    for (const w of r.waiting.splice(0)) w.reject(why);
    if (r.decoder.state !== 'closed') r.decoder.close();
  }

  private fail(regionId: number, err: unknown): void {
    if (this.broken !== undefined) return;
    const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    this.broken = reason;
    console.warn('viewer: video decoding failed, images from now on', err);
    for (const [id, r] of this.regions) this.close(id, r, new VideoSkipped(reason));
    this.on.failed(regionId, reason.slice(0, 500));
  }
}
