/** The strip of messages over the top of the desktop: watched badge, desktop health, notices. */
import type { SessionStatusMsg } from '@vdi/shared';
import { h } from '../dom';

export type DesktopCondition = 'starting' | 'unresponsive' | 'retrying' | 'lost';

const CONDITION_TEXT: Record<DesktopCondition, string> = {
  starting: 'Your desktop is starting…',
  unresponsive:
    'The desktop is not responding. Input may be delayed; the picture will update when it recovers.',
  retrying: 'The desktop is not responding. Retrying…',
  lost: 'The connection to the desktop was lost. Trying to restore it…',
};

export class Banners {
  readonly el = h('div', { class: 'viewer-banners' });
  private readonly watched = h('div', {
    class: 'banner banner-watch',
    hidden: true,
    attrs: { 'aria-live': 'polite' },
  });
  private readonly condition = h('div', {
    class: 'banner banner-warn',
    hidden: true,
    attrs: { role: 'alert' },
  });
  /** the network between this browser and the server, apart from the desktop's own health */
  private readonly network = h('div', {
    class: 'banner banner-warn banner-network',
    hidden: true,
    attrs: { role: 'status', 'aria-live': 'polite' },
  });
  private current: DesktopCondition | null = null;

  constructor() {
    this.el.append(this.watched, this.network, this.condition);
  }

  /** "Connection unstable" while nothing comes from the server (see HEARTBEAT). */
  setUnstable(message: string | null): void {
    this.network.hidden = message === null;
    this.network.textContent = message ?? '';
  }

  /** "An administrator is watching this session" while watched. */
  setWatched(watched: boolean, by?: string): void {
    this.watched.textContent = watched
      ? `An administrator is watching this session${by ? ` (${by})` : ''}`
      : '';
    this.watched.hidden = !watched;
  }

  setCondition(condition: DesktopCondition | null, reason?: string): void {
    this.current = condition;
    this.condition.hidden = condition === null;
    this.condition.textContent = condition
      ? CONDITION_TEXT[condition] + (reason ? ` (${reason})` : '')
      : '';
    this.condition.classList.toggle('banner-info', condition === 'starting');
  }

  /** The desktop's health as the server reports it (`session` events). */
  sessionStatus(msg: SessionStatusMsg): void {
    if (msg.state === 'desktop-unresponsive' && msg.retry)
      this.setCondition(
        'retrying',
        `attempt ${msg.retry.attempt}, next in ${Math.max(1, Math.round(msg.retry.inMs / 1000))} s`,
      );
    else if (msg.state === 'desktop-unresponsive') this.setCondition('unresponsive', msg.reason);
    else if (msg.state === 'desktop-lost') this.setCondition('lost', msg.reason);
    else if (msg.state === 'starting') this.setCondition('starting');
    else if (msg.state === 'active') this.setCondition(null);
  }

  /** A frame was drawn: the desktop has started and answers again. */
  frameDrawn(): void {
    if (this.current === 'unresponsive' || this.current === 'starting') this.setCondition(null);
  }

  /** Attached (again): the link to the desktop is back. */
  attached(): void {
    if (this.current === 'lost' || this.current === 'retrying') this.setCondition(null);
  }

  /** A dismissible message (an administrator's notice, an error of ours). */
  message(text: string, kind: 'notice' | 'error' = 'notice'): void {
    const dismiss = h('button', { type: 'button', class: 'banner-close', title: 'Dismiss' }, '×');
    dismiss.setAttribute('aria-label', 'Dismiss');
    const banner = h(
      'div',
      {
        class: `banner ${kind === 'error' ? 'banner-error' : 'banner-notice'}`,
        attrs: { role: 'alert' },
      },
      h('span', { class: 'banner-text' }, text),
      dismiss,
    );
    dismiss.addEventListener('click', () => banner.remove());
    this.el.append(banner);
  }
}
