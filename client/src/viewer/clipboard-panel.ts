/**
 * The Clipboard side panel: the desktop's clipboard text as it changes, and a Send button
 * that gives the desktop the text typed or pasted here (clipboard-sync.ts does the sending).
 */
import { field, h } from '../dom';

export interface ClipboardPanelPorts {
  /** to the desktop; false when not sent (unchanged, or not connected) */
  offer(text: string): boolean;
  /** whether input can reach the desktop now */
  interactive(): boolean;
  /** after Send: back to the desktop, so Ctrl+V goes there */
  sent(): void;
}

export class ClipboardPanel {
  readonly el: HTMLElement;
  private readonly text = h('textarea', {
    rows: 6,
    spellcheck: false,
    placeholder: 'Text copied in the desktop shows up here.',
  });

  constructor(ports: ClipboardPanelPorts) {
    const send = h('button', { type: 'button', class: 'btn btn-primary btn-small' }, 'Send');
    const status = h('small', { class: 'hint', attrs: { 'aria-live': 'polite' } });
    this.el = h(
      'aside',
      { class: 'viewer-panel', hidden: true, attrs: { 'aria-label': 'Clipboard' } },
      h('h2', null, 'Clipboard'),
      h(
        'p',
        { class: 'hint' },
        'Copy in the desktop and the text appears here. To paste into the desktop, put text here, press Send, then paste in the desktop.',
      ),
      field('Clipboard text', this.text),
      h('div', { class: 'panel-actions' }, status, send),
    );
    send.addEventListener('click', () => {
      status.textContent = ports.offer(this.text.value)
        ? 'Sent. Paste in the desktop (Ctrl+V).'
        : ports.interactive()
          ? 'The desktop already has this text.'
          : 'Not connected.';
      ports.sent();
    });
  }

  /** The desktop's clipboard changed. */
  show(text: string): void {
    this.text.value = text;
  }
}
