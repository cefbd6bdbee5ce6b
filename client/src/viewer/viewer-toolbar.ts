/**
 * The viewer's toolbar: the desktop's name and badges, the panel toggles (Clipboard, Stats),
 * Fullscreen, Disconnect and Log off. A shadow (view-only) viewer has no Clipboard and no
 * Log off. What the buttons do is wired by the page.
 */
import { h } from '../dom';
import { LAYOUT_LABELS } from './keyboard-layout';
import { DISPLAY_MODES } from './resize';
import { specialKeysMenu, type SpecialKeysMenu } from './special-keys';

export interface ViewerToolbar {
  el: HTMLElement;
  clipboardBtn: HTMLButtonElement;
  filesBtn: HTMLButtonElement;
  soundBtn: HTMLButtonElement;
  statsBtn: HTMLButtonElement;
  fullscreenBtn: HTMLButtonElement;
  disconnectBtn: HTMLButtonElement;
  logoffBtn: HTMLButtonElement;
  /** how the desktop fills the window (resize.ts) */
  displaySelect: HTMLSelectElement;
  /** why "fit to window" scales instead, when it does */
  displayNote: HTMLElement;
  /** the Keys menu (special-keys.ts); absent for a shadow */
  keys: SpecialKeysMenu | null;
  /** the user's keyboard layout (keyboard-layout.ts); absent for a shadow */
  layoutSelect: HTMLSelectElement | null;
  /** the on-screen keyboard button (touch devices) */
  keyboardBtn: HTMLButtonElement;
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

export function viewerToolbar(
  shadow: boolean,
  sendKeys: (keysyms: readonly number[]) => void,
): ViewerToolbar {
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
  const displaySelect = h(
    'select',
    { class: 'tb-select', title: 'How the desktop fills the window' },
    ...DISPLAY_MODES.map((m) => h('option', { value: m.mode }, m.label)),
  );
  displaySelect.setAttribute('aria-label', 'Display');
  const displayNote = h('span', { class: 'tb-note', hidden: true });
  const keys = shadow ? null : specialKeysMenu(sendKeys);
  let layoutSelect: HTMLSelectElement | null = null;
  if (!shadow) {
    layoutSelect = h(
      'select',
      { class: 'tb-select', title: 'The keyboard layout your keys type with (saved for you)' },
      ...Object.entries(LAYOUT_LABELS).map(([value, label]) => h('option', { value }, label)),
    );
    layoutSelect.setAttribute('aria-label', 'Keyboard layout');
  }
  const keyboardBtn = h(
    'button',
    {
      type: 'button',
      class: 'tb-btn tb-touch-only',
      title: "Open the device's on-screen keyboard",
    },
    'Keyboard',
  );
  const el = h(
    'div',
    { class: 'viewer-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Desktop' } },
    h('span', { class: 'viewer-title' }, title, badges),
    h(
      'span',
      { class: 'viewer-actions' },
      displaySelect,
      displayNote,
      keys?.el,
      layoutSelect,
      shadow ? null : keyboardBtn,
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
    displaySelect,
    displayNote,
    keys,
    layoutSelect,
    keyboardBtn,
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
