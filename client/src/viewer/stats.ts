/** Rolling viewer statistics over the last second, for the stats overlay. */

/** Length of the sliding window, ms. */
export const STATS_WINDOW_MS = 1000;

interface Sample {
  at: number;
  value: number;
}

export interface StatsSnapshot {
  /** frames drawn per second */
  fps: number;
  /** kbit/s received (frames only) */
  kbps: number;
  /** mean arrival → drawn time per frame, ms (decode + queue + draw) */
  renderMs: number;
  /** mean rects per frame */
  rectsPerFrame: number;
  /** lossy quality of the newest frame, 0 when it was lossless */
  quality: number;
  framesDrawn: number;
  bytesReceived: number;
}

export class ViewerStats {
  private readonly bytes: Sample[] = [];
  private readonly frames: Array<{ at: number; renderMs: number; rects: number }> = [];
  private quality = 0;
  framesDrawn = 0;
  bytesReceived = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  received(byteLength: number): void {
    this.bytesReceived += byteLength;
    this.bytes.push({ at: this.now(), value: byteLength });
    this.prune();
  }

  drawn(rects: number, renderMs: number, quality: number): void {
    this.framesDrawn++;
    this.quality = quality;
    this.frames.push({ at: this.now(), renderMs, rects });
    this.prune();
  }

  /** Drop samples older than the window (kept bounded even while nobody reads them). */
  private prune(): void {
    const cutoff = this.now() - STATS_WINDOW_MS;
    dropBefore(this.bytes, cutoff);
    dropBefore(this.frames, cutoff);
  }

  snapshot(): StatsSnapshot {
    this.prune();
    const bytes = this.bytes.reduce((sum, s) => sum + s.value, 0);
    const n = this.frames.length;
    return {
      fps: n * (1000 / STATS_WINDOW_MS),
      kbps: (bytes * 8) / STATS_WINDOW_MS,
      renderMs: n ? this.frames.reduce((sum, f) => sum + f.renderMs, 0) / n : 0,
      rectsPerFrame: n ? this.frames.reduce((sum, f) => sum + f.rects, 0) / n : 0,
      quality: this.quality,
      framesDrawn: this.framesDrawn,
      bytesReceived: this.bytesReceived,
    };
  }
}

function dropBefore(samples: Array<{ at: number }>, cutoff: number): void {
  let i = 0;
  while (i < samples.length && samples[i]!.at <= cutoff) i++;
  if (i > 0) samples.splice(0, i);
}
