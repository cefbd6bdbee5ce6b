/**
 * The on-screen keyboard of a phone or tablet: the toolbar's Keyboard button focuses a
 * hidden text field, which opens the device's keyboard; what is typed there goes to the
 * desktop as key presses (virtual keyboards often report no usable key codes, so the text
 * of each `input` event is what counts).
 */
import { keysymForChar, keysymFromEvent, XK } from '@vdi/shared';
import { h } from '../dom';

/** Keys a virtual keyboard sends as real key events, passed on as such. */
const PASS_KEYS = new Set([
  'Enter',
  'Backspace',
  'Tab',
  'Escape',
  'ArrowLeft',
  'ArrowRight',
  'ArrowUp',
  'ArrowDown',
  'Delete',
]);

export interface OnScreenKeyboardPorts {
  send(keysym: number, down: boolean): void;
  enabled(): boolean;
}

/** The key presses a piece of typed text (or an edit) stands for. */
export function keysymsForInput(inputType: string, data: string | null): number[] {
  if (inputType === 'deleteContentBackward') return [XK.BackSpace];
  if (inputType === 'deleteContentForward') return [XK.Delete];
  if (inputType === 'insertLineBreak' || inputType === 'insertParagraph') return [XK.Return];
  const out: number[] = [];
  for (const ch of data ?? '') {
    if (ch === '\n') out.push(XK.Return);
    else {
      const k = keysymForChar(ch);
      if (k !== undefined) out.push(k);
    }
  }
  return out;
}

export class OnScreenKeyboard {
  readonly input = h('input', {
    class: 'osk-input',
    type: 'text',
    autocomplete: 'off',
    spellcheck: false,
    attrs: { 'aria-label': 'On-screen keyboard input', autocapitalize: 'off', autocorrect: 'off' },
  });

  constructor(private readonly ports: OnScreenKeyboardPorts) {
    this.input.addEventListener('keydown', (e) => {
      if (!PASS_KEYS.has(e.key) || !this.ports.enabled()) return;
      const keysym = keysymFromEvent(e);
      if (keysym === undefined) return;
      e.preventDefault();
      this.tap(keysym);
    });
    this.input.addEventListener('input', (e) => {
      if (!this.ports.enabled()) return;
      const ev = e;
      for (const k of keysymsForInput(ev.inputType, ev.data)) this.tap(k);
      // keep the field empty (a lone space lets Backspace fire on keyboards that need text)
      this.input.value = '';
    });
  }

  /** Open the device keyboard. */
  open(): void {
    this.input.focus({ preventScroll: true });
  }

  private tap(keysym: number): void {
    this.ports.send(keysym, true);
    this.ports.send(keysym, false);
  }
}
