/**
 * Keyboard layouts: the character each physical key (KeyboardEvent.code) gives on a US, UK,
 * German or French keyboard, plain, with Shift, with AltGr and with Shift+AltGr. With a layout
 * chosen (the user's preference, stored on the server) the viewer sends these instead of the
 * character the browser reports, so the desktop types what the keycaps say whatever layout
 * the computer itself runs. AltGr is kept here (never sent): the desktop gets the character.
 * Dead keys are sent as dead keysyms (the desktop composes them).
 */
import type { KeyboardLayout } from '@vdi/shared';
import { keysymForChar } from '@vdi/shared';

export type LayoutName = Exclude<KeyboardLayout, 'auto'>;

export const LAYOUT_LABELS: Record<KeyboardLayout, string> = {
  auto: "This computer's layout",
  us: 'English (US)',
  uk: 'English (UK)',
  de: 'German (QWERTZ)',
  fr: 'French (AZERTY)',
};

/** X11 dead keysyms (keysymdef.h). */
export const DEAD = {
  grave: 0xfe50,
  acute: 0xfe51,
  circumflex: 0xfe52,
  tilde: 0xfe53,
  diaeresis: 0xfe57,
} as const;

/** A key's levels: plain, Shift, AltGr, Shift+AltGr; a character or a (dead) keysym. */
type Level = string | number | undefined;
type Levels = readonly [Level, Level, Level?, Level?];

/** Letter keys KeyA…KeyZ of a layout: `letters[i]` is what the key in US position i gives. */
function letterKeys(letters = 'abcdefghijklmnopqrstuvwxyz'): Record<string, Levels> {
  const out: Record<string, Levels> = {};
  for (let i = 0; i < 26; i++) {
    const ch = letters[i]!;
    out[`Key${String.fromCharCode(65 + i)}`] = [ch, ch.toUpperCase()];
  }
  return out;
}

/** Digit1…Digit0 as plain/shift pairs, from two strings of ten characters. */
function digitKeys(plain: string, shift: string): Record<string, Levels> {
  const out: Record<string, Levels> = {};
  const codes = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0'];
  codes.forEach((c, i) => (out[`Digit${c}`] = [plain[i], shift[i]]));
  return out;
}

const US: Record<string, Levels> = {
  ...letterKeys(),
  ...digitKeys('1234567890', '!@#$%^&*()'),
  Backquote: ['`', '~'],
  Minus: ['-', '_'],
  Equal: ['=', '+'],
  BracketLeft: ['[', '{'],
  BracketRight: [']', '}'],
  Backslash: ['\\', '|'],
  Semicolon: [';', ':'],
  Quote: ["'", '"'],
  Comma: [',', '<'],
  Period: ['.', '>'],
  Slash: ['/', '?'],
  IntlBackslash: ['\\', '|'],
  Space: [' ', ' '],
};

const UK: Record<string, Levels> = {
  ...US,
  ...digitKeys('1234567890', '!"£$%^&*()'),
  Digit4: ['4', '$', '€'],
  Backquote: ['`', '¬', '¦'],
  Quote: ["'", '@'],
  // the key left of Enter on an ISO keyboard
  Backslash: ['#', '~'],
  IntlBackslash: ['\\', '|'],
  KeyA: ['a', 'A', 'á', 'Á'],
  KeyE: ['e', 'E', 'é', 'É'],
  KeyI: ['i', 'I', 'í', 'Í'],
  KeyO: ['o', 'O', 'ó', 'Ó'],
  KeyU: ['u', 'U', 'ú', 'Ú'],
};

const DE: Record<string, Levels> = {
  // QWERTZ: Y and Z swapped
  ...letterKeys('abcdefghijklmnopqrstuvwxzy'),
  ...digitKeys('1234567890', '!"§$%&/()='),
  Digit2: ['2', '"', '²'],
  Digit3: ['3', '§', '³'],
  Digit7: ['7', '/', '{'],
  Digit8: ['8', '(', '['],
  Digit9: ['9', ')', ']'],
  Digit0: ['0', '=', '}'],
  Backquote: [DEAD.circumflex, '°'],
  Minus: ['ß', '?', '\\'],
  Equal: [DEAD.acute, DEAD.grave],
  KeyQ: ['q', 'Q', '@'],
  KeyE: ['e', 'E', '€'],
  KeyM: ['m', 'M', 'µ'],
  BracketLeft: ['ü', 'Ü'],
  BracketRight: ['+', '*', '~'],
  Backslash: ['#', "'"],
  Semicolon: ['ö', 'Ö'],
  Quote: ['ä', 'Ä'],
  Comma: [',', ';'],
  Period: ['.', ':'],
  Slash: ['-', '_'],
  IntlBackslash: ['<', '>', '|'],
  Space: [' ', ' '],
};

const FR: Record<string, Levels> = {
  // AZERTY: A↔Q, Z↔W, and M where US has the semicolon
  ...letterKeys('qbcdefghijklmnoparstuvzxyw'),
  KeyM: [',', '?'],
  Semicolon: ['m', 'M'],
  Digit1: ['&', '1'],
  Digit2: ['é', '2', DEAD.tilde],
  Digit3: ['"', '3', '#'],
  Digit4: ["'", '4', '{'],
  Digit5: ['(', '5', '['],
  Digit6: ['-', '6', '|'],
  Digit7: ['è', '7', DEAD.grave],
  Digit8: ['_', '8', '\\'],
  Digit9: ['ç', '9', '^'],
  Digit0: ['à', '0', '@'],
  Backquote: ['²', undefined],
  Minus: [')', '°', ']'],
  Equal: ['=', '+', '}'],
  KeyE: ['e', 'E', '€'],
  BracketLeft: [DEAD.circumflex, DEAD.diaeresis],
  BracketRight: ['$', '£', '¤'],
  Backslash: ['*', 'µ'],
  Quote: ['ù', '%'],
  Comma: [';', '.'],
  Period: [':', '/'],
  Slash: ['!', '§'],
  IntlBackslash: ['<', '>'],
  Space: [' ', ' '],
};

export const LAYOUTS: Record<LayoutName, Readonly<Record<string, Levels>>> = {
  us: US,
  uk: UK,
  de: DE,
  fr: FR,
};

export interface PhysicalKey {
  code: string;
  shift: boolean;
  altGr: boolean;
  capsLock: boolean;
}

/**
 * The keysym a physical key gives on `layout` with these modifiers; undefined when the
 * layout leaves it to the browser (not a character key: Enter, arrows, F-keys, modifiers…)
 * or gives nothing at that level.
 */
export function layoutKeysym(layout: LayoutName, key: PhysicalKey): number | undefined {
  const levels = LAYOUTS[layout][key.code];
  if (!levels) return undefined;
  const base = levels[0];
  // Caps Lock shifts letters only (a key whose plain level is a lowercase letter)
  const letter = typeof base === 'string' && base.toLowerCase() !== base.toUpperCase();
  const shifted = key.shift !== (key.capsLock && letter);
  const level = key.altGr
    ? shifted
      ? (levels[3] ?? levels[2])
      : levels[2]
    : levels[shifted ? 1 : 0];
  if (level === undefined) return undefined;
  return typeof level === 'number' ? level : keysymForChar(level);
}

/** Keys that select AltGr on these layouts: kept by the viewer, not sent to the desktop. */
export const ALTGR_CODES: ReadonlySet<string> = new Set(['AltRight']);

/**
 * Translates key events with a layout (see KeyboardPorts.translate): a keysym, `null` for
 * AltGr itself (not sent), undefined for keys the layout leaves to the browser.
 */
export class LayoutMapper {
  private altGrDown = false;

  constructor(public layout: KeyboardLayout = 'auto') {}

  translate(e: {
    code: string;
    type?: string;
    shiftKey: boolean;
    ctrlKey?: boolean;
    altKey?: boolean;
    getModifierState?(key: string): boolean;
  }): number | null | undefined {
    if (this.layout === 'auto') return undefined;
    if (ALTGR_CODES.has(e.code)) {
      this.altGrDown = e.type !== 'keyup';
      return null;
    }
    const altGr = this.altGrDown || e.getModifierState?.('AltGraph') === true;
    return layoutKeysym(this.layout, {
      code: e.code,
      shift: e.shiftKey,
      altGr,
      capsLock: e.getModifierState?.('CapsLock') === true,
    });
  }

  /** Focus went away: AltGr is up as far as we know. */
  reset(): void {
    this.altGrDown = false;
  }
}
