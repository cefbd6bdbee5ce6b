/**
 * How the desktop fills the window: "fit" resizes the desktop itself to the window (RFB
 * SetDesktopSize through the gateway, debounced, within the pool's range), "scale" scales the
 * picture to the window, "1:1" shows it pixel for pixel (scrolling when larger). A viewer that
 * may not resize (a shadow, a VM, a VNC server that cannot) scales instead, and says why.
 */
import type { DesktopResize } from '@vdi/shared';
import { browserClock, type Cancel, type Clock } from '../clock';
import { fitSize } from './pointer';

export type DisplayMode = 'fit' | 'scale' | 'actual';

export const DISPLAY_MODES: ReadonlyArray<{ mode: DisplayMode; label: string }> = [
  { mode: 'fit', label: 'Fit to window (resize desktop)' },
  { mode: 'scale', label: 'Scale' },
  { mode: 'actual', label: '1:1' },
];

/** Quiet time after the last window change before the desktop is asked to resize, ms. */
export const RESIZE_DEBOUNCE_MS = 400;
const STORAGE_KEY = 'vdi.displayMode';

export interface Size {
  width: number;
  height: number;
}

/**
 * The desktop size that fills an area of CSS pixels, clamped into the pool's range; even
 * widths (some servers need them). The device pixel ratio is left out on purpose: a desktop
 * at 2× the pixels would make its text half as big on a HiDPI screen.
 */
export function targetSize(area: Size, range: DesktopResize): Size {
  let width = Math.min(Math.max(Math.floor(area.width), range.minWidth), range.maxWidth);
  const height = Math.min(Math.max(Math.floor(area.height), range.minHeight), range.maxHeight);
  if (width % 2 === 1 && width - 1 >= range.minWidth) width -= 1;
  return { width, height };
}

/** The canvas' CSS size for a mode: fitted to the area, or its own pixels. */
export function displaySize(mode: DisplayMode, fb: Size, area: Size): Size {
  if (mode === 'actual') return { width: fb.width, height: fb.height };
  return fitSize(fb.width, fb.height, area.width, area.height);
}

export interface ResizePorts {
  /** ask the desktop for this size; false when it could not be sent */
  request(width: number, height: number): boolean;
  /** the area the desktop is shown in, CSS px */
  area(): Size;
  /** the desktop's current size */
  current(): Size;
  /** the mode changed, or whether it applies: redraw the canvas' CSS size */
  changed(): void;
}

export class DesktopResizer {
  /** the user's own choice, kept in the browser; undefined: the pool's default */
  private chosen: DisplayMode | undefined;
  private offer: DesktopResize | undefined;
  private pending: Cancel | undefined;

  constructor(
    private readonly ports: ResizePorts,
    private readonly clock: Clock = browserClock,
    private readonly storage: Pick<Storage, 'getItem' | 'setItem'> | undefined = safeStorage(),
  ) {
    const saved = this.storage?.getItem(STORAGE_KEY);
    this.chosen = DISPLAY_MODES.some((m) => m.mode === saved) ? (saved as DisplayMode) : undefined;
  }

  /** the mode chosen: the user's, else the pool's default (fit when it sets a resize range) */
  get mode(): DisplayMode {
    return this.chosen ?? (this.offer?.fitByDefault ? 'fit' : 'scale');
  }

  /** the mode in effect: "fit" falls back to scaling where the desktop cannot resize */
  get effectiveMode(): DisplayMode {
    const mode = this.mode;
    return mode === 'fit' && !this.canResize ? 'scale' : mode;
  }

  get canResize(): boolean {
    return this.offer?.allowed === true;
  }

  /** why this desktop cannot follow the window, once attached */
  get reason(): string | undefined {
    return this.offer?.allowed === false ? this.offer.reason : undefined;
  }

  /** The attach answer says whether and how far this viewer may resize. */
  attached(offer: DesktopResize): void {
    this.offer = offer;
    this.ports.changed();
    this.schedule(0);
  }

  setMode(mode: DisplayMode): void {
    this.chosen = mode;
    this.storage?.setItem(STORAGE_KEY, mode);
    this.ports.changed();
    this.schedule(0);
  }

  /** The window (the area) changed size: resize the desktop once it settles. */
  areaChanged(): void {
    this.schedule(RESIZE_DEBOUNCE_MS);
  }

  dispose(): void {
    this.pending?.();
  }

  private schedule(ms: number): void {
    this.pending?.();
    this.pending = undefined;
    if (this.effectiveMode !== 'fit' || !this.offer) return;
    this.pending = this.clock.after(ms, () => {
      this.pending = undefined;
      this.apply();
    });
  }

  private apply(): void {
    const offer = this.offer;
    if (this.effectiveMode !== 'fit' || !offer) return;
    const area = this.ports.area();
    if (area.width <= 0 || area.height <= 0) return;
    const want = targetSize(area, offer);
    const now = this.ports.current();
    if (want.width === now.width && want.height === now.height) return;
    this.ports.request(want.width, want.height);
  }
}

function safeStorage(): Storage | undefined {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
}
