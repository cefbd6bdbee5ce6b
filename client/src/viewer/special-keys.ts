/**
 * The Keys menu: combinations a browser or the local system would take for itself
 * (Ctrl+Alt+Del, Ctrl+Alt+Backspace, Ctrl+Alt+F1…F12, Super, Print), sent to the desktop as
 * key presses in order and releases in reverse order.
 */
import { XK } from '@vdi/shared';
import { h } from '../dom';

export interface SpecialKey {
  label: string;
  keysyms: readonly number[];
}

const F = (n: number): number => XK.F1 + n - 1;

export const SPECIAL_KEYS: readonly SpecialKey[] = [
  { label: 'Ctrl+Alt+Del', keysyms: [XK.Control_L, XK.Alt_L, XK.Delete] },
  { label: 'Ctrl+Alt+Backspace', keysyms: [XK.Control_L, XK.Alt_L, XK.BackSpace] },
  ...Array.from({ length: 12 }, (_, i) => ({
    label: `Ctrl+Alt+F${i + 1}`,
    keysyms: [XK.Control_L, XK.Alt_L, F(i + 1)],
  })),
  { label: 'Super', keysyms: [XK.Super_L] },
  { label: 'Print', keysyms: [XK.Print] },
  { label: 'Alt+Tab', keysyms: [XK.Alt_L, XK.Tab] },
  { label: 'Escape', keysyms: [XK.Escape] },
];

/** The key events of one combination: presses in order, then releases in reverse. */
export function comboEvents(keysyms: readonly number[]): Array<[keysym: number, down: boolean]> {
  return [
    ...keysyms.map((k): [number, boolean] => [k, true]),
    ...[...keysyms].reverse().map((k): [number, boolean] => [k, false]),
  ];
}

export interface SpecialKeysMenu {
  button: HTMLButtonElement;
  menu: HTMLElement;
  el: HTMLElement;
  close(): void;
}

/** Space kept between an open menu and the window's edges, px */
const EDGE_PX = 8;

/**
 * Shifts an open menu sideways so all of it is in the window: it hangs from its button's
 * right edge, which in a narrow window (or with the button near the left) would put its
 * first column off screen.
 */
function keepInView(menu: HTMLElement): void {
  menu.style.transform = '';
  const r = menu.getBoundingClientRect();
  let dx = 0;
  if (r.right > window.innerWidth - EDGE_PX) dx = window.innerWidth - EDGE_PX - r.right;
  if (r.left + dx < EDGE_PX) dx = EDGE_PX - r.left;
  if (dx !== 0) menu.style.transform = `translateX(${Math.round(dx)}px)`;
}

/** The toolbar's Keys button and its menu; `send` gets each chosen combination. */
export function specialKeysMenu(send: (keysyms: readonly number[]) => void): SpecialKeysMenu {
  const button = h(
    'button',
    {
      type: 'button',
      class: 'tb-btn',
      title: 'Send keys the browser would keep (Ctrl+Alt+Del, …)',
      attrs: { 'aria-haspopup': 'menu', 'aria-expanded': 'false' },
    },
    'Keys',
  );
  const menu = h('div', {
    class: 'tb-menu',
    hidden: true,
    attrs: { role: 'menu', 'aria-label': 'Special keys' },
  });
  const close = (): void => {
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
  };
  for (const key of SPECIAL_KEYS) {
    const item = h(
      'button',
      { type: 'button', class: 'tb-menu-item', attrs: { role: 'menuitem' } },
      key.label,
    );
    item.addEventListener('click', () => {
      close();
      send(key.keysyms);
    });
    menu.append(item);
  }
  button.addEventListener('click', () => {
    const open = menu.hidden === true;
    menu.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) {
      keepInView(menu);
      menu.querySelector<HTMLButtonElement>('button')?.focus();
    }
  });
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      close();
      button.focus();
    }
  });
  const el = h('span', { class: 'tb-menu-wrap' }, button, menu);
  return { button, menu, el, close };
}
