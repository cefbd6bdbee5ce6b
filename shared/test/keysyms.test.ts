import { describe, expect, it } from 'vitest';
import { XK, keysymForChar, keysymFromEvent } from '../src/keysyms.js';

const k = (key: string, code = '', location = 0) => keysymFromEvent({ key, code, location });

describe('keysym mapping', () => {
  it('maps letters, digits and symbols to their Latin-1 keysyms', () => {
    expect(k('a', 'KeyA')).toBe(0x61);
    expect(k('A', 'KeyA')).toBe(0x41);
    expect(k('7', 'Digit7')).toBe(0x37);
    for (const ch of '!@#$%^&*()_+-=[]{};\':",./<>?\\|`~ ') {
      expect(k(ch)).toBe(ch.charCodeAt(0));
    }
    expect(k('é')).toBe(0xe9);
  });

  it('maps characters beyond Latin-1 to Unicode keysyms', () => {
    expect(k('€')).toBe(0x010020ac);
    expect(keysymForChar('😀')).toBe(0x01000000 + 0x1f600);
    expect(keysymForChar('ab')).toBeUndefined();
    expect(keysymForChar('\u0007')).toBeUndefined();
  });

  it('maps editing and navigation keys', () => {
    expect(k('Enter', 'Enter')).toBe(XK.Return);
    expect(k('Backspace', 'Backspace')).toBe(XK.BackSpace);
    expect(k('Tab', 'Tab')).toBe(XK.Tab);
    expect(k('ArrowLeft', 'ArrowLeft')).toBe(XK.Left);
    expect(k('ArrowUp', 'ArrowUp')).toBe(XK.Up);
    expect(k('ArrowRight', 'ArrowRight')).toBe(XK.Right);
    expect(k('ArrowDown', 'ArrowDown')).toBe(XK.Down);
    expect(k('Escape', 'Escape')).toBe(XK.Escape);
    expect(k('F1', 'F1')).toBe(0xffbe);
    expect(k('F12', 'F12')).toBe(0xffc9);
    expect(k('Dead', 'Quote')).toBeUndefined();
    expect(k('Unidentified', '')).toBeUndefined();
  });

  it('tells left and right modifiers apart by code', () => {
    expect(k('Shift', 'ShiftLeft', 1)).toBe(XK.Shift_L);
    expect(k('Shift', 'ShiftRight', 2)).toBe(XK.Shift_R);
    expect(k('Control', 'ControlLeft', 1)).toBe(XK.Control_L);
    expect(k('Control', 'ControlRight', 2)).toBe(XK.Control_R);
    expect(k('Alt', 'AltLeft', 1)).toBe(XK.Alt_L);
    expect(k('AltGraph', 'AltRight', 2)).toBe(XK.Alt_R);
    expect(k('Meta', 'MetaLeft', 1)).toBe(XK.Super_L);
    expect(k('Shift', '')).toBe(XK.Shift_L);
  });

  it('maps the numeric keypad by location', () => {
    expect(k('5', 'Numpad5', 3)).toBe(0xffb5);
    expect(k('Enter', 'NumpadEnter', 3)).toBe(XK.KP_Enter);
    expect(k('+', 'NumpadAdd', 3)).toBe(XK.KP_Add);
    expect(k('Home', 'Numpad7', 3)).toBe(XK.KP_Home);
    expect(k('.', 'NumpadDecimal', 3)).toBe(XK.KP_Decimal);
  });
});
