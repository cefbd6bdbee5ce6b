/**
 * The viewer's toolbar: the desktop's name and badges, the panel toggles (Clipboard, Stats),
 * Fullscreen, Disconnect and Log off. A shadow (view-only) viewer has no Clipboard and no
 * Log off. What the buttons do is wired by the page.
 */
import { h } from '../dom';

export interface ViewerToolbar {
  el: HTMLElement;
  clipboardBtn: HTMLButtonElement;
  filesBtn: HTMLButtonElement;
  soundBtn: HTMLButtonElement;
  statsBtn: HTMLButtonElement;
  fullscreenBtn: HTMLButtonElement;
  disconnectBtn: HTMLButtonElement;
  logoffBtn: HTMLButtonElement;
  /** the desktop's name, once the attach answer says it */
  setName(name: string): void;
  addViewOnlyBadge(): void;
}

const toggle = (label: string, tip: string): HTMLButtonElement =>
  h(
    'button',
    { type: 'button', class: 'tb-btn', title: tip, attrs: { 'aria-pressed': 'false' } },
    label,
  );

export function viewerToolbar(shadow: boolean): ViewerToolbar {
  const title = h('span', { class: 'viewer-name' }, 'Desktop');
  const badges = h('span', { class: 'viewer-badges' });
  const addViewOnlyBadge = (): void => {
    badges.append(h('span', { class: 'badge badge-viewonly' }, 'View only'));
  };
  if (shadow) addViewOnlyBadge();

  const clipboardBtn = toggle('Clipboard', 'Show the clipboard panel');
  const filesBtn = toggle('Files', 'Upload files to the desktop, download its Downloads');
  const soundBtn = toggle('Sound', "Mute or set the volume of the desktop's sound");
  const statsBtn = toggle('Stats', 'Show connection statistics');
  const fullscreenBtn = toggle('Fullscreen', 'Full screen');
  const disconnectBtn = h(
    'button',
    { type: 'button', class: 'tb-btn', title: 'Close the viewer; the desktop keeps running' },
    'Disconnect',
  );
  const logoffBtn = h(
    'button',
    {
      type: 'button',
      class: 'tb-btn tb-danger',
      title: 'End the session and close its applications',
    },
    'Log off',
  );
  const el = h(
    'div',
    { class: 'viewer-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Desktop' } },
    h('span', { class: 'viewer-title' }, title, badges),
    h(
      'span',
      { class: 'viewer-actions' },
      shadow ? null : clipboardBtn,
      shadow ? null : filesBtn,
      shadow ? null : soundBtn,
      statsBtn,
      fullscreenBtn,
      disconnectBtn,
      shadow ? null : logoffBtn,
    ),
  );
  return {
    el,
    clipboardBtn,
    filesBtn,
    soundBtn,
    statsBtn,
    fullscreenBtn,
    disconnectBtn,
    logoffBtn,
    setName(name) {
      title.textContent = name;
    },
    addViewOnlyBadge,
  };
}

/** Shows or hides a side panel and says so on its toolbar button. */
export function setPanel(panel: HTMLElement, button: HTMLButtonElement, open: boolean): void {
  panel.hidden = !open;
  button.setAttribute('aria-pressed', String(open));
}
