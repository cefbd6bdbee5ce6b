/**
 * The viewer in full screen, with the keyboard lock Chrome allows there: Escape and
 * Alt+Tab-like shortcuts then go to the desktop instead of the browser.
 */

interface KeyboardLock {
  lock?(keys?: string[]): Promise<void>;
  unlock?(): void;
}

export class Fullscreen {
  private readonly onChange = (): void => {
    const on = document.fullscreenElement === this.root;
    this.button.setAttribute('aria-pressed', String(on));
    const kb = (navigator as Navigator & { keyboard?: KeyboardLock }).keyboard;
    if (on) void kb?.lock?.().catch(() => {});
    else kb?.unlock?.();
    this.focus();
  };

  constructor(
    private readonly root: HTMLElement,
    /** the toolbar's Fullscreen button, pressed while in full screen */
    private readonly button: HTMLButtonElement,
    /** gives the keyboard back to the desktop after a change */
    private readonly focus: () => void,
  ) {
    document.addEventListener('fullscreenchange', this.onChange);
  }

  toggle(): void {
    if (document.fullscreenElement) void document.exitFullscreen().catch(() => {});
    else void this.root.requestFullscreen?.().catch(() => {});
  }

  dispose(): void {
    document.removeEventListener('fullscreenchange', this.onChange);
    if (document.fullscreenElement) void document.exitFullscreen().catch(() => {});
  }
}
