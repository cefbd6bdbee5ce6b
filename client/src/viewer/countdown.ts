/**
 * The banner that counts down to an idle or maximum-length log-off. The server warns every
 * broker tick while the log-off is near (SessionWarningMsg); between warnings this counts
 * down by itself. Input hides an idle warning at once: it starts the idle clock over.
 */
import type { SessionWarningMsg } from '@vdi/shared';
import { h } from '../dom';
import { browserClock, type Cancel, type Clock } from '../clock';

/** "1:05", "0:09" */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, '0')}`;
}

export function countdownText(kind: SessionWarningMsg['kind'], ms: number): string {
  const left = formatCountdown(ms);
  return kind === 'idle'
    ? `You will be logged off in ${left} because the desktop has been idle. Move the mouse or press a key to stay.`
    : `This session reaches its time limit: you will be logged off in ${left}. Save your work now.`;
}

export class LogoffCountdown {
  private kind: SessionWarningMsg['kind'] = 'idle';
  private endsAt = 0;
  private ticking: Cancel | undefined;

  constructor(
    private readonly clock: Clock = browserClock,
    readonly el: HTMLElement = h('div', {
      class: 'banner banner-countdown',
      hidden: true,
      attrs: { role: 'alert', 'aria-live': 'assertive' },
    }),
  ) {}

  /** true while the banner is shown */
  get active(): boolean {
    return this.ticking !== undefined;
  }

  /** The server's warning: show (or correct) the countdown. */
  warn(msg: SessionWarningMsg): void {
    this.kind = msg.kind;
    this.endsAt = this.clock.now() + msg.inMs;
    this.el.dataset.kind = msg.kind;
    this.render();
    if (!this.ticking) this.ticking = this.clock.every(1000, () => this.render());
  }

  /** The user did something in the desktop: an idle log-off is off (for now). */
  input(): void {
    if (this.kind === 'idle') this.hide();
  }

  hide(): void {
    this.ticking?.();
    this.ticking = undefined;
    this.el.hidden = true;
  }

  private render(): void {
    const left = this.endsAt - this.clock.now();
    this.el.hidden = false;
    this.el.textContent = countdownText(this.kind, left);
    // the server's own log-off follows; the banner stays at 0:00 until the end screen
    if (left <= 0) {
      this.ticking?.();
      this.ticking = undefined;
    }
  }
}
