/**
 * What covers the desktop while it cannot be used: the "Connecting…" / "Reconnecting…"
 * overlay (the page's only role="status" element) and the end screen ("Your session has
 * ended", "Cannot open this desktop", or "Disconnected" with a Reconnect button).
 */
import { h } from '../dom';
import type { StateDetail, ViewerState } from './connection';

export class ConnectionScreens {
  readonly overlay: HTMLElement;
  readonly endPanel: HTMLElement;
  /** shown on the "Disconnected" screen: the server closed us on purpose, the user decides */
  readonly reconnectBtn: HTMLButtonElement;
  private readonly overlayText = h('strong', null, 'Connecting…');
  private readonly overlayDetail = h('span', { class: 'overlay-detail' });
  private readonly endTitle = h('h2', null, 'Your session has ended');
  private readonly endReason = h('p', { class: 'end-reason' });

  constructor(shadow: boolean) {
    this.overlay = h(
      'div',
      { class: 'viewer-overlay', attrs: { role: 'status' } },
      h(
        'div',
        { class: 'overlay-box' },
        h('span', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }),
        this.overlayText,
        this.overlayDetail,
      ),
    );
    this.reconnectBtn = h(
      'button',
      { type: 'button', class: 'btn btn-primary', hidden: true },
      'Reconnect',
    );
    this.endPanel = h(
      'section',
      { class: 'viewer-end', hidden: true },
      h(
        'div',
        { class: 'card end-card' },
        this.endTitle,
        this.endReason,
        h(
          'div',
          { class: 'card-actions' },
          this.reconnectBtn,
          h(
            'a',
            { href: shadow ? '/admin/sessions' : '/', class: 'btn' },
            shadow ? 'Back to sessions' : 'Back to my desktops',
          ),
        ),
      ),
    );
  }

  show(state: ViewerState, detail: StateDetail): void {
    const waiting = state === 'connecting' || state === 'reconnecting';
    this.overlay.hidden = !waiting;
    this.overlayText.textContent = state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…';
    this.overlayDetail.textContent = !waiting
      ? ''
      : (detail.message ??
        (detail.attempt
          ? `Attempt ${detail.attempt}`
          : state === 'reconnecting'
            ? 'The connection was interrupted.'
            : ''));
    this.endPanel.hidden = !(state === 'ended' || state === 'disconnected');
    if (state === 'ended') {
      this.endTitle.textContent =
        detail.code && detail.code !== 'SESSION_ENDED'
          ? 'Cannot open this desktop'
          : 'Your session has ended';
      this.endReason.textContent =
        detail.message ||
        (detail.code === 'SESSION_ENDED' || !detail.code
          ? 'The desktop was logged off.'
          : detail.code);
      this.reconnectBtn.hidden = true;
    } else if (state === 'disconnected') {
      this.endTitle.textContent = 'Disconnected';
      this.endReason.textContent = detail.message ?? '';
      this.reconnectBtn.hidden = false;
    }
  }
}
