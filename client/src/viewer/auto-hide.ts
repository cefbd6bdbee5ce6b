/**
 * The toolbar fades out while the user works in the desktop and comes back when the
 * pointer nears the top edge, hovers it or tabs into it. It fades (opacity) rather than
 * sliding away, so it stays clickable and findable at all times.
 */

/** Idle time before the toolbar fades, ms. */
const HIDE_AFTER_MS = 2500;
/** Pointer distance from the top edge that brings the toolbar back, CSS px. */
const REVEAL_ZONE_PX = 48;

export class AutoHide {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pinned = true;
  private hovered = false;

  constructor(
    private readonly bar: HTMLElement,
    area: HTMLElement,
  ) {
    area.addEventListener('pointermove', (e) => {
      if (e.clientY <= REVEAL_ZONE_PX) this.show();
    });
    bar.addEventListener('pointerenter', () => {
      this.hovered = true;
      this.show();
    });
    bar.addEventListener('pointerleave', () => {
      this.hovered = false;
      this.schedule();
    });
    bar.addEventListener('focusin', () => this.show());
    bar.addEventListener('focusout', () => this.schedule());
  }

  /** Pinned: always shown (not connected, a panel open). */
  setPinned(pinned: boolean): void {
    this.pinned = pinned;
    if (pinned) this.show();
    else this.schedule();
  }

  show(): void {
    clearTimeout(this.timer);
    this.bar.classList.remove('is-faded');
    this.schedule();
  }

  dispose(): void {
    clearTimeout(this.timer);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.pinned) return;
    this.timer = setTimeout(() => {
      if (this.pinned || this.hovered || this.bar.contains(document.activeElement)) return;
      this.bar.classList.add('is-faded');
    }, HIDE_AFTER_MS);
  }
}
