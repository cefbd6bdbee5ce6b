/**
 * The microphone's sampler, on the audio rendering thread (an AudioWorklet, loaded by
 * mic-capture.ts): turns the input's first channel into s16le PCM and posts it to the page
 * 20 ms at a time (the context runs at the microphone format's rate).
 */

// the AudioWorkletGlobalScope, which the DOM library does not describe
declare const sampleRate: number;
declare function registerProcessor(name: string, ctor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}

class MicProcessor extends AudioWorkletProcessor {
  private readonly size = Math.round(sampleRate / 50);
  private chunk = new Int16Array(this.size);
  private filled = 0;

  process(inputs: Float32Array[][]): boolean {
    const samples = inputs[0]?.[0];
    if (!samples) return true;
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]!));
      this.chunk[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.filled === this.size) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor('vdi-mic', MicProcessor);

// a module, so its declarations of the worklet scope are its own
export {};
