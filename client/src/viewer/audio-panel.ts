/**
 * The Sound side panel: mute and volume of the desktop's sound (audio-player.ts), and the
 * microphone into the desktop (mic-capture.ts).
 */
import { field, h } from '../dom';
import type { AudioPlayer } from './audio-player';
import type { MicCapture } from './mic-capture';

export class AudioPanel {
  readonly el: HTMLElement;

  constructor(player: AudioPlayer, mic: MicCapture) {
    const micBox = h('input', { type: 'checkbox' });
    const micStatus = h('small', { class: 'hint', attrs: { 'aria-live': 'polite' } });
    micBox.addEventListener('change', () => {
      micStatus.textContent = '';
      if (!micBox.checked) return mic.stop();
      mic.start().catch((err: unknown) => {
        micBox.checked = false;
        micStatus.textContent = `No microphone: ${err instanceof Error ? err.message : String(err)}`;
      });
    });
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
      h(
        'div',
        { class: 'check' },
        micBox,
        h('label', { htmlFor: (micBox.id = 'sound-mic') }, 'Microphone'),
      ),
      h('p', { class: 'hint' }, 'Sends your microphone to the desktop while on.'),
      micStatus,
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
