/**
 * The sound's jitter buffer, on the audio rendering thread (an AudioWorklet, loaded by
 * audio-player.ts). Decoded packets arrive as planar stereo; the processor plays them out
 * 128 frames at a time. It starts (and starts again after running dry) only once `target`
 * frames are buffered, so network jitter up to that much plays smoothly; when more than
 * `target + slack` has piled up (a stall, a suspended tab) it skips ahead to `target`, and
 * when the buffer has not once been below `target + TRIM` for half a second (a burst after a
 * hiccup that never drained) it drops the surplus, so the delay goes back to `target`.
 * Memory is a fixed ring of one second.
 */

/** surplus over the target tolerated for half a second before it is dropped, seconds */
const TRIM_S = 0.01;

// the AudioWorkletGlobalScope, which the DOM library does not describe
declare const sampleRate: number;
declare function registerProcessor(name: string, ctor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}

interface Options {
  processorOptions?: { targetMs?: number; slackMs?: number };
}

class JitterBufferProcessor extends AudioWorkletProcessor {
  private readonly capacity = sampleRate; // 1 s
  private readonly left = new Float32Array(this.capacity);
  private readonly right = new Float32Array(this.capacity);
  /** frames written and read since the start (ring positions modulo capacity) */
  private written = 0;
  private read = 0;
  private playing = false;
  private readonly target: number;
  private readonly slack: number;
  private underruns = 0;
  private skipped = 0;
  private lastReport = 0;
  /** the least buffered since `windowStart` (frames read) */
  private windowMin = Infinity;
  private windowStart = 0;

  constructor(options: Options) {
    super();
    this.target = Math.round(((options.processorOptions?.targetMs ?? 30) / 1000) * sampleRate);
    this.slack = Math.round(((options.processorOptions?.slackMs ?? 60) / 1000) * sampleRate);
    this.port.onmessage = (e: MessageEvent<{ l: Float32Array; r: Float32Array }>) =>
      this.push(e.data.l, e.data.r);
  }

  private push(l: Float32Array, r: Float32Array): void {
    for (let i = 0; i < l.length; i++) {
      const at = (this.written + i) % this.capacity;
      this.left[at] = l[i]!;
      this.right[at] = r[i]!;
    }
    this.written += l.length;
    const buffered = this.written - this.read;
    if (buffered > this.target + this.slack) {
      this.skipped += buffered - this.target;
      this.read = this.written - this.target;
    }
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const out = outputs[0]!;
    const l = out[0]!;
    const r = out[1] ?? out[0]!;
    const n = l.length;
    const buffered = this.written - this.read;
    if (!this.playing && buffered >= this.target) this.playing = true;
    if (this.playing && buffered < n) {
      this.playing = false;
      this.underruns++;
    }
    if (this.playing) {
      this.windowMin = Math.min(this.windowMin, buffered);
      if (this.read - this.windowStart >= sampleRate / 2) {
        const surplus = this.windowMin - this.target;
        if (surplus > TRIM_S * sampleRate && buffered - surplus >= n) {
          this.read += surplus;
          this.skipped += surplus;
        }
        this.windowMin = Infinity;
        this.windowStart = this.read;
      }
      for (let i = 0; i < n; i++) {
        const at = (this.read + i) % this.capacity;
        l[i] = this.left[at]!;
        r[i] = this.right[at]!;
      }
      this.read += n;
    } else {
      l.fill(0);
      r.fill(0);
    }
    if (this.written - this.lastReport >= sampleRate / 2) {
      this.lastReport = this.written;
      this.port.postMessage({
        bufferedMs: ((this.written - this.read) / sampleRate) * 1000,
        underruns: this.underruns,
        skippedMs: (this.skipped / sampleRate) * 1000,
      });
    }
    return true;
  }
}

registerProcessor('vdi-jitter-buffer', JitterBufferProcessor);
