/**
 * The browser's microphone into the desktop (issue 13's stretch goal): on the user's say-so
 * (the Sound panel), `getUserMedia` → an AudioContext at the microphone format's rate →
 * mic-worklet.ts, whose 20 ms s16le chunks go to the gateway as `mic` messages; an empty
 * one says it stopped. The desktop hears it as its default recording source.
 */
import { MIC_FORMAT } from '@vdi/shared';
import workletUrl from './mic-worklet.ts?worker&url';

/** `window.__vdiMic`: what the microphone test reads */
export interface MicHooks {
  state: 'off' | 'starting' | 'on' | `failed: ${string}`;
  chunks: number;
}

declare global {
  interface Window {
    __vdiMic?: MicHooks;
  }
}

export class MicCapture {
  private stream: MediaStream | undefined;
  private ctx: AudioContext | undefined;
  readonly hooks: MicHooks = { state: 'off', chunks: 0 };

  constructor(private readonly send: (pcm: Uint8Array<ArrayBuffer>) => void) {
    window.__vdiMic = this.hooks;
  }

  get on(): boolean {
    return this.hooks.state === 'on' || this.hooks.state === 'starting';
  }

  /** Asks for the microphone (the browser may ask the user) and starts sending. */
  async start(): Promise<void> {
    if (this.on) return;
    this.hooks.state = 'starting';
    try {
      if (!navigator.mediaDevices?.getUserMedia)
        throw new Error('this browser has no microphone access here (it needs HTTPS)');
      const stream = await navigator.mediaDevices.getUserMedia({
        // echo cancellation: the desktop's own sound may be playing from the speakers; no noise
        // suppression or gain control, which reshape steady sounds (music, a test tone)
        audio: {
          channelCount: 1,
          echoCancellation: true,
          noiseSuppression: false,
          autoGainControl: false,
        },
      });
      this.stream = stream;
      if (this.hooks.state !== 'starting') return this.release(); // stopped meanwhile
      const ctx = new AudioContext({
        sampleRate: MIC_FORMAT.sampleRate,
        latencyHint: 'interactive',
      });
      this.ctx = ctx;
      await ctx.audioWorklet.addModule(workletUrl);
      const node = new AudioWorkletNode(ctx, 'vdi-mic', {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        channelCountMode: 'explicit',
      });
      node.port.onmessage = (e: MessageEvent<ArrayBuffer>) => {
        if (this.hooks.state !== 'on') return;
        this.hooks.chunks++;
        this.send(new Uint8Array(e.data));
      };
      // a silent path to the speakers keeps the node in the rendering graph
      const silent = ctx.createGain();
      silent.gain.value = 0;
      ctx.createMediaStreamSource(stream).connect(node).connect(silent).connect(ctx.destination);
      await ctx.resume();
      if (this.hooks.state !== 'starting') return this.release();
      this.hooks.state = 'on';
    } catch (err) {
      this.release();
      this.hooks.state = `failed: ${err instanceof Error ? err.message : String(err)}`;
      throw err;
    }
  }

  /** Stops sending and lets go of the microphone. */
  stop(): void {
    const was = this.hooks.state;
    this.hooks.state = 'off';
    this.release();
    if (was === 'on') this.send(new Uint8Array(0));
  }

  private release(): void {
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.stream = undefined;
    void this.ctx?.close();
    this.ctx = undefined;
  }

  dispose(): void {
    this.stop();
    if (window.__vdiMic === this.hooks) delete window.__vdiMic;
  }
}
