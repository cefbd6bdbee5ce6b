/** The Sound side panel: mute and volume of the desktop's sound (audio-player.ts). */
import { field, h } from '../dom';
import type { AudioPlayer } from './audio-player';

export class AudioPanel {
  readonly el: HTMLElement;

  constructor(player: AudioPlayer) {
    const mute = h('input', { type: 'checkbox' });
    const volume = h('input', { type: 'range', min: '0', max: '100', step: '1', value: '100' });
    const status = h('small', { class: 'hint', attrs: { 'aria-live': 'polite' } });
    this.el = h(
      'aside',
      { class: 'viewer-panel viewer-sound', hidden: true, attrs: { 'aria-label': 'Sound' } },
      h('h2', null, 'Sound'),
      h('p', { class: 'hint' }, "The desktop's sound plays here."),
      h('div', { class: 'check' }, mute, h('label', { htmlFor: (mute.id = 'sound-mute') }, 'Mute')),
      field('Volume', volume),
      status,
    );
    mute.addEventListener('change', () => player.setMuted(mute.checked));
    volume.addEventListener('input', () => player.setVolume(Number(volume.value) / 100));
    const show = (): void => {
      const s = player.hooks.state;
      status.textContent =
        s === 'running'
          ? ''
          : s === 'suspended'
            ? 'Click the desktop to turn the sound on (the browser waits for a click).'
            : s.startsWith('failed') || s.startsWith('decoder')
              ? `No sound: ${s}`
              : '';
    };
    this.el.addEventListener('focusin', show);
    this.show = show;
  }

  /** refreshes the status line (when the panel opens) */
  readonly show: () => void;
}
