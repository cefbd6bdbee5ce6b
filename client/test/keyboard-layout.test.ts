import { describe, expect, it } from 'vitest';
import {
  DEAD,
  LAYOUTS,
  LayoutMapper,
  layoutKeysym,
  type LayoutName,
} from '../src/viewer/keyboard-layout';

const key = (
  code: string,
  mods: { shift?: boolean; altGr?: boolean; capsLock?: boolean } = {},
) => ({
  code,
  shift: mods.shift ?? false,
  altGr: mods.altGr ?? false,
  capsLock: mods.capsLock ?? false,
});
const ch = (c: string) => c.codePointAt(0)!;
/** what a layout types for a key, as text (dead keys as their keysym) */
const typed = (layout: LayoutName, code: string, mods = {}) => {
  const k = layoutKeysym(layout, key(code, mods));
  if (k === undefined) return undefined;
  return k >= 0x01000000
    ? String.fromCodePoint(k - 0x01000000)
    : k < 0x100
      ? String.fromCharCode(k)
      : k;
};

describe('keyboard layouts', () => {
  it('US: letters, shifted digits and punctuation', () => {
    expect(typed('us', 'KeyZ')).toBe('z');
    expect(typed('us', 'KeyZ', { shift: true })).toBe('Z');
    expect(typed('us', 'Digit2', { shift: true })).toBe('@');
    expect(typed('us', 'Quote', { shift: true })).toBe('"');
    expect(typed('us', 'Enter')).toBeUndefined(); // left to the browser's reading
  });

  it('UK: @ on the quote key, £ on Shift+3, # left of Enter, € on AltGr+4', () => {
    expect(typed('uk', 'Quote', { shift: true })).toBe('@');
    expect(typed('uk', 'Digit2', { shift: true })).toBe('"');
    expect(typed('uk', 'Digit3', { shift: true })).toBe('£');
    expect(typed('uk', 'Backslash')).toBe('#');
    expect(typed('uk', 'Digit4', { altGr: true })).toBe('€');
    expect(layoutKeysym('uk', key('Digit4', { altGr: true }))).toBe(0x01000000 + 0x20ac);
  });

  it('DE: Y and Z swapped, umlauts, AltGr+Q is @, AltGr+7…0 are braces, dead circumflex', () => {
    expect(typed('de', 'KeyZ')).toBe('y');
    expect(typed('de', 'KeyY')).toBe('z');
    expect(typed('de', 'KeyZ', { shift: true })).toBe('Y');
    expect(typed('de', 'KeyQ', { altGr: true })).toBe('@');
    expect(typed('de', 'Digit7', { altGr: true })).toBe('{');
    expect(typed('de', 'Digit0', { altGr: true })).toBe('}');
    expect(typed('de', 'Minus', { altGr: true })).toBe('\\');
    expect(typed('de', 'Semicolon')).toBe('ö');
    expect(layoutKeysym('de', key('Quote'))).toBe(ch('ä'));
    expect(typed('de', 'BracketLeft', { shift: true })).toBe('Ü');
    expect(typed('de', 'Minus')).toBe('ß');
    expect(typed('de', 'Digit7', { shift: true })).toBe('/');
    expect(typed('de', 'IntlBackslash', { shift: true })).toBe('>');
    expect(layoutKeysym('de', key('Backquote'))).toBe(DEAD.circumflex);
    expect(layoutKeysym('de', key('Equal', { shift: true }))).toBe(DEAD.grave);
  });

  it('FR: AZERTY letters, accented digits row, AltGr+0 is @', () => {
    expect(typed('fr', 'KeyQ')).toBe('a');
    expect(typed('fr', 'KeyA')).toBe('q');
    expect(typed('fr', 'KeyW')).toBe('z');
    expect(typed('fr', 'KeyZ')).toBe('w');
    expect(typed('fr', 'Semicolon')).toBe('m');
    expect(typed('fr', 'KeyM')).toBe(',');
    expect(typed('fr', 'Digit1')).toBe('&');
    expect(typed('fr', 'Digit1', { shift: true })).toBe('1');
    expect(typed('fr', 'Digit2')).toBe('é');
    expect(typed('fr', 'Digit0', { altGr: true })).toBe('@');
    expect(layoutKeysym('fr', key('BracketLeft'))).toBe(DEAD.circumflex);
  });

  it('Caps Lock shifts letters only; Shift with Caps Lock gives lowercase', () => {
    expect(typed('de', 'KeyA', { capsLock: true })).toBe('A');
    expect(typed('de', 'KeyA', { capsLock: true, shift: true })).toBe('a');
    expect(typed('de', 'Digit1', { capsLock: true })).toBe('1');
    expect(typed('de', 'Semicolon', { capsLock: true })).toBe('Ö');
  });

  it('every layout maps every letter key and the digit row', () => {
    for (const layout of Object.keys(LAYOUTS) as LayoutName[]) {
      for (let i = 0; i < 26; i++) {
        const code = `Key${String.fromCharCode(65 + i)}`;
        expect(layoutKeysym(layout, key(code)), `${layout} ${code}`).toBeDefined();
      }
      for (let d = 0; d <= 9; d++)
        expect(
          layoutKeysym(layout, key(`Digit${d}`, { shift: true })),
          `${layout} ${d}`,
        ).toBeDefined();
    }
  });
});

describe('LayoutMapper', () => {
  const ev = (code: string, type = 'keydown', mods: { shiftKey?: boolean } = {}) => ({
    code,
    type,
    shiftKey: mods.shiftKey ?? false,
    getModifierState: () => false,
  });

  it('auto leaves every key to the browser', () => {
    const m = new LayoutMapper('auto');
    expect(m.translate(ev('KeyZ'))).toBeUndefined();
    expect(m.translate(ev('AltRight'))).toBeUndefined();
  });

  it('keeps AltGr (right Alt) from the desktop and applies it to the next key', () => {
    const m = new LayoutMapper('de');
    expect(m.translate(ev('AltRight'))).toBeNull();
    expect(m.translate(ev('KeyQ'))).toBe(ch('@'));
    expect(m.translate(ev('AltRight', 'keyup'))).toBeNull();
    expect(m.translate(ev('KeyQ'))).toBe(ch('q'));
    expect(m.translate(ev('KeyZ'))).toBe(ch('y'));
    expect(m.translate(ev('Enter'))).toBeUndefined();
    expect(m.translate(ev('ShiftLeft'))).toBeUndefined();
  });

  it('forgets AltGr when focus goes', () => {
    const m = new LayoutMapper('de');
    m.translate(ev('AltRight'));
    m.reset();
    expect(m.translate(ev('KeyQ'))).toBe(ch('q'));
  });

  it('Shift is applied by the layout (the key gives what its cap says)', () => {
    const m = new LayoutMapper('fr');
    expect(m.translate(ev('Digit1', 'keydown', { shiftKey: true }))).toBe(ch('1'));
  });
});
