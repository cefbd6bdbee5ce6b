import { z } from 'zod';

/**
 * Sound from the desktop (issue 13). The viewer asks for it with the `audio` event, naming the
 * codec it can decode (`opus` with WebCodecs, else `pcm`: raw s16le 48 kHz stereo, for
 * localhost) or `off`; the gateway then sends `audio` messages: one byte of AUDIO_CODEC_ID,
 * then one packet (10 ms of sound). They are dropped, never queued, while the viewer's
 * connection is behind.
 */
export const AudioCodec = z.enum(['opus', 'pcm']);
export type AudioCodec = z.infer<typeof AudioCodec>;

export const AudioRequest = z.strictObject({
  codec: z.union([AudioCodec, z.literal('off')]),
});
export type AudioRequest = z.infer<typeof AudioRequest>;

/** the first byte of an `audio` message */
export const AUDIO_CODEC_ID = { opus: 1, pcm: 2 } as const;

/** sample rate and channels of the desktop's sound, both codecs */
export const AUDIO_FORMAT = { sampleRate: 48_000, channels: 2 } as const;

/**
 * Microphone (issue 13's stretch goal): while the user has it on, the viewer sends `mic`
 * messages of raw s16le mono PCM at MIC_FORMAT's rate, 20 ms each (at most MIC_MAX_BYTES),
 * and an empty one when it stops. The gateway writes them into the desktop's own sound
 * server, where they are the default recording source; chunks beyond real time are dropped.
 */
export const MIC_FORMAT = { sampleRate: 16_000, channels: 1 } as const;
/** bytes of one second of microphone PCM */
export const MIC_BYTES_PER_SEC = MIC_FORMAT.sampleRate * MIC_FORMAT.channels * 2;
/** the largest `mic` message: 100 ms */
export const MIC_MAX_BYTES = MIC_BYTES_PER_SEC / 10;

export const MicChunk = z
  .instanceof(Uint8Array)
  .refine(
    (b) => b.byteLength <= MIC_MAX_BYTES && b.byteLength % 2 === 0,
    `a microphone chunk is whole 16-bit samples, at most ${MIC_MAX_BYTES} bytes`,
  );
export type MicChunk = z.infer<typeof MicChunk>;
