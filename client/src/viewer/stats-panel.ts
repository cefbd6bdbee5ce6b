/** The Stats side panel: the rolling figures of stats.ts, redrawn every second while open. */
import { browserClock, type Cancel, type Clock } from '../clock';
import { h } from '../dom';
import type { StatsSnapshot, ViewerStats } from './stats';

/** Redraw period while the panel is open, ms. */
export const STATS_PERIOD_MS = 1000;

/** The panel's rows, label and value. */
export function statsRows(
  s: StatsSnapshot,
  size: { width: number; height: number },
): Array<[string, string]> {
  return [
    ['FPS', s.fps.toFixed(0)],
    ['Received', `${s.kbps.toFixed(0)} kbit/s`],
    ['Decode + draw', `${s.renderMs.toFixed(1)} ms/frame`],
    ['Quality', s.quality ? String(s.quality) : 'lossless'],
    ['Rects/frame', s.rectsPerFrame.toFixed(1)],
    ['Frames', String(s.framesDrawn)],
    ['Size', `${size.width}×${size.height}`],
  ];
}

export class StatsPanel {
  private readonly list = h('dl', { class: 'stats-list' });
  readonly el = h(
    'aside',
    { class: 'viewer-panel viewer-stats', hidden: true, attrs: { 'aria-label': 'Statistics' } },
    this.list,
  );
  private stopRedraw: Cancel = () => {};

  constructor(
    private readonly stats: ViewerStats,
    /** the framebuffer's size now */
    private readonly size: () => { width: number; height: number },
    private readonly clock: Clock = browserClock,
  ) {}

  /** Redraws now and every STATS_PERIOD_MS while open; stops when closed. */
  setOpen(open: boolean): void {
    this.stopRedraw();
    this.stopRedraw = () => {};
    if (!open) return;
    this.render();
    this.stopRedraw = this.clock.every(STATS_PERIOD_MS, () => this.render());
  }

  dispose(): void {
    this.setOpen(false);
  }

  private render(): void {
    this.list.replaceChildren(
      ...statsRows(this.stats.snapshot(), this.size()).flatMap(([k, v]) => [
        h('dt', null, k),
        h('dd', null, v),
      ]),
    );
  }
}
