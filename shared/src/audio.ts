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
