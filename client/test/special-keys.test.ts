import { describe, expect, it } from 'vitest';
import { XK } from '@vdi/shared';
import { SPECIAL_KEYS, comboEvents } from '../src/viewer/special-keys';

describe('special keys', () => {
  it('presses in order and releases in reverse', () => {
    expect(comboEvents([XK.Control_L, XK.Alt_L, XK.Delete])).toEqual([
      [XK.Control_L, true],
      [XK.Alt_L, true],
      [XK.Delete, true],
      [XK.Delete, false],
      [XK.Alt_L, false],
      [XK.Control_L, false],
    ]);
  });

  it('offers Ctrl+Alt+Del, Ctrl+Alt+Backspace, Ctrl+Alt+F1…F12, Super and Print', () => {
    const labels = SPECIAL_KEYS.map((k) => k.label);
    for (const l of ['Ctrl+Alt+Del', 'Ctrl+Alt+Backspace', 'Super', 'Print'])
      expect(labels).toContain(l);
    for (let n = 1; n <= 12; n++) {
      const key = SPECIAL_KEYS.find((k) => k.label === `Ctrl+Alt+F${n}`);
      expect(key?.keysyms).toEqual([XK.Control_L, XK.Alt_L, 0xffbe + n - 1]);
    }
  });
});
