/**
 * Browser KeyboardEvent → X11 keysym (X11 keysymdef.h values).
 *
 * Printable characters map by their character: Latin-1 (U+0020..U+007E, U+00A0..U+00FF)
 * to the same value, everything else to 0x01000000 + code point, which X servers accept as
 * Unicode keysyms. Named keys map through NAMED_KEYS; keys whose left and right (or numpad)
 * versions differ map through CODE_KEYS by `code`.
 */

export const XK = {
  BackSpace: 0xff08,
  Tab: 0xff09,
  ISO_Left_Tab: 0xfe20,
  Return: 0xff0d,
  Escape: 0xff1b,
  Delete: 0xffff,
  Home: 0xff50,
  Left: 0xff51,
  Up: 0xff52,
  Right: 0xff53,
  Down: 0xff54,
  Page_Up: 0xff55,
  Page_Down: 0xff56,
  End: 0xff57,
  Insert: 0xff63,
  Menu: 0xff67,
  Pause: 0xff13,
  Scroll_Lock: 0xff14,
  Print: 0xff61,
  Num_Lock: 0xff7f,
  Caps_Lock: 0xffe5,
  Shift_L: 0xffe1,
  Shift_R: 0xffe2,
  Control_L: 0xffe3,
  Control_R: 0xffe4,
  Meta_L: 0xffe7,
  Meta_R: 0xffe8,
  Alt_L: 0xffe9,
  Alt_R: 0xffea,
  Super_L: 0xffeb,
  Super_R: 0xffec,
  ISO_Level3_Shift: 0xfe03,
  Mode_switch: 0xff7e,
  F1: 0xffbe,
  KP_Enter: 0xff8d,
  KP_Home: 0xff95,
  KP_Left: 0xff96,
  KP_Up: 0xff97,
  KP_Right: 0xff98,
  KP_Down: 0xff99,
  KP_Page_Up: 0xff9a,
  KP_Page_Down: 0xff9b,
  KP_End: 0xff9c,
  KP_Begin: 0xff9d,
  KP_Insert: 0xff9e,
  KP_Delete: 0xff9f,
  KP_Multiply: 0xffaa,
  KP_Add: 0xffab,
  KP_Separator: 0xffac,
  KP_Subtract: 0xffad,
  KP_Decimal: 0xffae,
  KP_Divide: 0xffaf,
  KP_0: 0xffb0,
} as const;

/** KeyboardEvent.key values of non-printing keys. */
const NAMED_KEYS: Readonly<Record<string, number>> = {
  Backspace: XK.BackSpace,
  Tab: XK.Tab,
  Enter: XK.Return,
  Escape: XK.Escape,
  Delete: XK.Delete,
  Home: XK.Home,
  End: XK.End,
  PageUp: XK.Page_Up,
  PageDown: XK.Page_Down,
  ArrowLeft: XK.Left,
  ArrowUp: XK.Up,
  ArrowRight: XK.Right,
  ArrowDown: XK.Down,
  Insert: XK.Insert,
  ContextMenu: XK.Menu,
  Pause: XK.Pause,
  ScrollLock: XK.Scroll_Lock,
  PrintScreen: XK.Print,
  NumLock: XK.Num_Lock,
  CapsLock: XK.Caps_Lock,
  Shift: XK.Shift_L,
  Control: XK.Control_L,
  Alt: XK.Alt_L,
  AltGraph: XK.ISO_Level3_Shift,
  Meta: XK.Super_L,
  OS: XK.Super_L,
  Super: XK.Super_L,
  ModeChange: XK.Mode_switch,
};

/** KeyboardEvent.code values whose keysym depends on the physical key. */
const CODE_KEYS: Readonly<Record<string, number>> = {
  ShiftLeft: XK.Shift_L,
  ShiftRight: XK.Shift_R,
  ControlLeft: XK.Control_L,
  ControlRight: XK.Control_R,
  AltLeft: XK.Alt_L,
  AltRight: XK.Alt_R,
  MetaLeft: XK.Super_L,
  MetaRight: XK.Super_R,
  NumpadEnter: XK.KP_Enter,
  NumpadMultiply: XK.KP_Multiply,
  NumpadAdd: XK.KP_Add,
  NumpadSubtract: XK.KP_Subtract,
  NumpadDivide: XK.KP_Divide,
  NumpadComma: XK.KP_Separator,
};

/** Numpad keys with Num Lock off report a navigation `key`; these are their keypad keysyms. */
const NUMPAD_NAV: Readonly<Record<string, number>> = {
  Home: XK.KP_Home,
  ArrowLeft: XK.KP_Left,
  ArrowUp: XK.KP_Up,
  ArrowRight: XK.KP_Right,
  ArrowDown: XK.KP_Down,
  PageUp: XK.KP_Page_Up,
  PageDown: XK.KP_Page_Down,
  End: XK.KP_End,
  Clear: XK.KP_Begin,
  Insert: XK.KP_Insert,
  Delete: XK.KP_Delete,
};

/** DOM_KEY_LOCATION_NUMPAD */
const LOCATION_NUMPAD = 3;

export interface KeyLike {
  key: string;
  code: string;
  location?: number;
}

/** Keysym for a printable character (one code point). */
export function keysymForChar(ch: string): number | undefined {
  const cp = ch.codePointAt(0);
  if (cp === undefined || [...ch].length !== 1) return undefined;
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return undefined;
  if (cp <= 0xff) return cp;
  return 0x01000000 + cp;
}

/** The keysym a key event should send, or undefined when the key has none (e.g. "Dead"). */
export function keysymFromEvent(e: KeyLike): number | undefined {
  const byCode = CODE_KEYS[e.code];
  if (byCode !== undefined) return byCode;
  if (e.location === LOCATION_NUMPAD) {
    if (/^[0-9]$/.test(e.key)) return XK.KP_0 + Number(e.key);
    if (e.key === '.' || e.key === ',') return XK.KP_Decimal;
    const nav = NUMPAD_NAV[e.key];
    if (nav !== undefined) return nav;
  }
  const fn = /^F([1-9]|1[0-9]|2[0-4])$/.exec(e.key);
  if (fn) return XK.F1 + Number(fn[1]) - 1;
  const named = NAMED_KEYS[e.key];
  if (named !== undefined) return named;
  return keysymForChar(e.key);
}
