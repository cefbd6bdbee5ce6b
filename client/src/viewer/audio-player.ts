/**
 * The desktop's sound in the browser (issue 13): asks the gateway for Opus when WebCodecs
 * can decode it (`AudioDecoder`), else for raw PCM (fine on localhost); decodes each 10 ms
 * packet and hands it to the jitter buffer on the audio thread (audio-worklet.ts), then a
 * gain (mute, volume) and an AnalyserNode (the level meter and tests) to the speakers.
 * Browsers start an AudioContext only after a user gesture: until then it resumes on the
 * first click or key press in the page.
 */
import { AUDIO_CODEC_ID, AUDIO_FORMAT, type AudioCodec } from '@vdi/shared';
import workletUrl from './audio-worklet.ts?worker&url';

/** how much sound the jitter buffer holds before playing, ms */
const TARGET_MS = 30;
/** decoded packets waiting in the decoder beyond which new ones are dropped */
const MAX_DECODE_QUEUE = 20;

export interface AudioPlayerPorts {
  /** asks the gateway for sound in a codec, or for none */
  request(codec: AudioCodec | 'off'): void;
}

/** `window.__vdiAudio`: what the sound test reads */
export interface AudioHooks {
  codec: AudioCodec | 'off';
  packets: number;
  state: string;
  analyser: AnalyserNode | undefined;
  bufferedMs: number;
  underruns: number;
}

declare global {
  interface Window {
    __vdiAudio?: AudioHooks;
  }
}

export class AudioPlayer {
  private ctx: AudioContext | undefined;
  private node: AudioWorkletNode | undefined;
  private gain: GainNode | undefined;
  private decoder: AudioDecoder | undefined;
  private codec: AudioCodec | undefined;
  private timestamp = 0;
  private wanted = true;
  private volume = 1;
  private muted = false;
  private starting: Promise<void> | undefined;
  readonly hooks: AudioHooks = {
    codec: 'off',
    packets: 0,
    state: 'off',
    analyser: undefined,
    bufferedMs: 0,
    underruns: 0,
  };
  private readonly resume = (): void => void this.ctx?.resume();

  constructor(private readonly ports: AudioPlayerPorts) {
    window.__vdiAudio = this.hooks;
  }

  /** After each attach: (re)asks for sound, setting the player up the first time. */
  attached(): void {
    if (!this.wanted) return;
    this.starting ??= this.setUp().catch((err: unknown) => {
      this.hooks.state = `failed: ${err instanceof Error ? err.message : String(err)}`;
      this.starting = undefined;
    });
    void this.starting.then(() => {
      if (this.codec && this.wanted) this.ports.request(this.codec);
    });
  }

  private async setUp(): Promise<void> {
    this.codec = (await opusDecodable()) ? 'opus' : 'pcm';
    const ctx = new AudioContext({
      sampleRate: AUDIO_FORMAT.sampleRate,
      latencyHint: 'interactive',
    });
    this.ctx = ctx;
    await ctx.audioWorklet.addModule(workletUrl);
    const node = new AudioWorkletNode(ctx, 'vdi-jitter-buffer', {
      numberOfInputs: 0,
      outputChannelCount: [AUDIO_FORMAT.channels],
      processorOptions: { targetMs: TARGET_MS },
    });
    node.port.onmessage = (e: MessageEvent<{ bufferedMs: number; underruns: number }>) => {
      this.hooks.bufferedMs = e.data.bufferedMs;
      this.hooks.underruns = e.data.underruns;
    };
    const gain = ctx.createGain();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    node.connect(gain).connect(analyser).connect(ctx.destination);
    this.node = node;
    this.gain = gain;
    this.hooks.analyser = analyser;
    this.applyGain();
    if (this.codec === 'opus') {
      this.decoder = new AudioDecoder({
        output: (data) => this.play(data),
        error: (e) => (this.hooks.state = `decoder: ${e.message}`),
      });
      this.decoder.configure({
        codec: 'opus',
        sampleRate: AUDIO_FORMAT.sampleRate,
        numberOfChannels: AUDIO_FORMAT.channels,
      });
    }
    this.hooks.codec = this.codec;
    ctx.onstatechange = () => (this.hooks.state = ctx.state);
    this.hooks.state = ctx.state;
    if (ctx.state !== 'running') {
      document.addEventListener('pointerdown', this.resume, true);
      document.addEventListener('keydown', this.resume, true);
    }
  }

  /** One `audio` message from the gateway. */
  receive(data: ArrayBuffer | Uint8Array): void {
    if (!this.node || !this.wanted) return;
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const payload = bytes.subarray(1);
    this.hooks.packets++;
    if (bytes[0] === AUDIO_CODEC_ID.opus && this.decoder) {
      if (this.decoder.decodeQueueSize > MAX_DECODE_QUEUE) return;
      this.decoder.decode(
        new EncodedAudioChunk({ type: 'key', timestamp: this.timestamp, data: payload }),
      );
      this.timestamp += 10_000;
    } else if (bytes[0] === AUDIO_CODEC_ID.pcm) {
      const frames = payload.length >> 2;
      const view = new DataView(payload.buffer, payload.byteOffset, frames * 4);
      const l = new Float32Array(frames);
      const r = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        l[i] = view.getInt16(i * 4, true) / 32768;
        r[i] = view.getInt16(i * 4 + 2, true) / 32768;
      }
      this.node.port.postMessage({ l, r }, [l.buffer, r.buffer]);
    }
  }

  private play(data: AudioData): void {
    try {
      const frames = data.numberOfFrames;
      const l = new Float32Array(frames);
      const r = new Float32Array(frames);
      if (data.format === 'f32-planar' || data.format === 's16-planar') {
        data.copyTo(l, { planeIndex: 0, format: 'f32-planar' });
        data.copyTo(data.numberOfChannels > 1 ? r : l, {
          planeIndex: data.numberOfChannels > 1 ? 1 : 0,
          format: 'f32-planar',
        });
        if (data.numberOfChannels === 1) r.set(l);
      } else {
        const ch = data.numberOfChannels;
        const all = new Float32Array(frames * ch);
        data.copyTo(all, { planeIndex: 0, format: 'f32' });
        for (let i = 0; i < frames; i++) {
          l[i] = all[i * ch]!;
          r[i] = all[i * ch + (ch > 1 ? 1 : 0)]!;
        }
      }
      this.node?.port.postMessage({ l, r }, [l.buffer, r.buffer]);
    } finally {
      data.close();
    }
  }

  /** The gateway cannot give this desktop's sound (a VM, no PulseAudio in the desktop). */
  unavailable(message: string): void {
    this.hooks.state = `failed: ${message}`;
  }

  setMuted(muted: boolean): void {
    this.muted = muted;
    this.applyGain();
  }

  setVolume(volume: number): void {
    this.volume = Math.min(1, Math.max(0, volume));
    this.applyGain();
  }

  get isMuted(): boolean {
    return this.muted;
  }

  private applyGain(): void {
    if (this.gain) this.gain.gain.value = this.muted ? 0 : this.volume;
  }

  dispose(): void {
    this.wanted = false;
    document.removeEventListener('pointerdown', this.resume, true);
    document.removeEventListener('keydown', this.resume, true);
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    void this.ctx?.close();
    if (window.__vdiAudio === this.hooks) delete window.__vdiAudio;
  }
}

async function opusDecodable(): Promise<boolean> {
  if (typeof AudioDecoder === 'undefined') return false;
  try {
    const r = await AudioDecoder.isConfigSupported({
      codec: 'opus',
      sampleRate: AUDIO_FORMAT.sampleRate,
      numberOfChannels: AUDIO_FORMAT.channels,
    });
    return r.supported === true;
  } catch {
    return false;
  }
}
