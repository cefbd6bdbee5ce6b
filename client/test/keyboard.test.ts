import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { XK } from '@vdi/shared';
import { KeyTracker, keyId } from '../src/viewer/key-tracker';
import { KeyboardInput } from '../src/viewer/keyboard-input';

describe('KeyTracker', () => {
  it('releases with the keysym sent on press (Shift released first: "A" down, "a" up)', () => {
    const t = new KeyTracker();
    t.press('ShiftLeft', XK.Shift_L);
    t.press('KeyA', 0x41);
    expect(t.release('ShiftLeft')).toBe(XK.Shift_L);
    expect(t.release('KeyA')).toBe(0x41);
    expect(t.size).toBe(0);
  });

  it('reports auto-repeat as not fresh', () => {
    const t = new KeyTracker();
    expect(t.press('KeyA', 0x61)).toBe(true);
    expect(t.press('KeyA', 0x61)).toBe(false);
    expect(t.size).toBe(1);
  });

  it('ignores the release of a key it never saw pressed', () => {
    expect(new KeyTracker().release('KeyQ')).toBeUndefined();
  });

  it('releaseAll returns every pressed key, most recent first, and forgets them', () => {
    const t = new KeyTracker();
    t.press('ControlLeft', XK.Control_L);
    t.press('AltLeft', XK.Alt_L);
    t.press('KeyT', 0x74);
    expect(t.releaseAll()).toEqual([0x74, XK.Alt_L, XK.Control_L]);
    expect(t.size).toBe(0);
    expect(t.releaseAll()).toEqual([]);
  });

  it('keys by physical key, falling back to the key value', () => {
    expect(keyId({ code: 'KeyA', key: 'a' })).toBe('KeyA');
    expect(keyId({ code: '', key: 'é' })).toBe('key:é');
  });
});

// ── KeyboardInput with minimal DOM stand-ins (node environment, no jsdom) ──

type Doc = EventTarget & { visibilityState: string; activeElement: unknown };
const g = globalThis as unknown as { window?: EventTarget; document?: Doc };

function keyEvent(
  type: 'keydown' | 'keyup',
  key: string,
  code: string,
  mods: Partial<Record<'ctrlKey' | 'metaKey' | 'altKey' | 'shiftKey' | 'repeat', boolean>> = {},
) {
  return Object.assign(new Event(type, { cancelable: true }), {
    key,
    code,
    location: 0,
    isComposing: false,
    ctrlKey: false,
    metaKey: false,
    altKey: false,
    shiftKey: false,
    repeat: false,
    ...mods,
  });
}

function pasteEvent(text: string) {
  return Object.assign(new Event('paste', { cancelable: true }), {
    clipboardData: { getData: (type: string) => (type === 'text/plain' ? text : '') },
  });
}

describe('KeyboardInput', () => {
  let target: EventTarget;
  let sent: Array<[number, boolean] | ['paste', string]>;
  let enabled: boolean;
  let input: KeyboardInput;

  beforeEach(() => {
    g.window = new EventTarget();
    g.document = Object.assign(new EventTarget(), {
      visibilityState: 'visible',
      activeElement: null,
    });
    target = new EventTarget();
    g.document.activeElement = target;
    sent = [];
    enabled = true;
    input = new KeyboardInput(target as HTMLElement, {
      send: (keysym, down) => {
        sent.push([keysym, down]);
        return true;
      },
      enabled: () => enabled,
      pasted: (text) => void sent.push(['paste', text]),
    });
  });

  afterEach(() => {
    input.dispose();
    vi.useRealTimers();
    delete g.window;
    delete g.document;
  });

  it('sends key down/up and prevents the browser default', () => {
    const down = keyEvent('keydown', 'Tab', 'Tab');
    target.dispatchEvent(down);
    target.dispatchEvent(keyEvent('keyup', 'Tab', 'Tab'));
    expect(sent).toEqual([
      [XK.Tab, true],
      [XK.Tab, false],
    ]);
    expect(down.defaultPrevented).toBe(true);
  });

  it('releases every pressed key when the canvas loses focus (no stuck modifiers)', () => {
    target.dispatchEvent(keyEvent('keydown', 'Control', 'ControlLeft', { ctrlKey: true }));
    target.dispatchEvent(keyEvent('keydown', 'Alt', 'AltLeft', { ctrlKey: true, altKey: true }));
    sent = [];
    target.dispatchEvent(new Event('blur'));
    expect(sent).toEqual([
      [XK.Alt_L, false],
      [XK.Control_L, false],
    ]);
    // the real key-ups arrive elsewhere later: nothing more to send
    sent = [];
    target.dispatchEvent(keyEvent('keyup', 'Control', 'ControlLeft'));
    expect(sent).toEqual([]);
  });

  it('releases on window blur and when the tab is hidden', () => {
    target.dispatchEvent(keyEvent('keydown', 'Shift', 'ShiftLeft', { shiftKey: true }));
    g.window!.dispatchEvent(new Event('blur'));
    expect(sent.at(-1)).toEqual([XK.Shift_L, false]);
    target.dispatchEvent(keyEvent('keydown', 'Meta', 'MetaLeft', { metaKey: true }));
    g.document!.visibilityState = 'hidden';
    g.document!.dispatchEvent(new Event('visibilitychange'));
    expect(sent.at(-1)).toEqual([XK.Super_L, false]);
  });

  it('leaves keys to the browser while disabled (view-only, not attached)', () => {
    enabled = false;
    const e = keyEvent('keydown', 'a', 'KeyA');
    target.dispatchEvent(e);
    expect(sent).toEqual([]);
    expect(e.defaultPrevented).toBe(false);
  });

  it('holds Ctrl+V until the paste event has delivered the text, then sends the key', () => {
    target.dispatchEvent(keyEvent('keydown', 'Control', 'ControlLeft', { ctrlKey: true }));
    const v = keyEvent('keydown', 'v', 'KeyV', { ctrlKey: true });
    target.dispatchEvent(v);
    expect(v.defaultPrevented).toBe(false); // the browser must run its paste
    target.dispatchEvent(keyEvent('keyup', 'v', 'KeyV', { ctrlKey: true }));
    expect(sent).toEqual([[XK.Control_L, true]]);
    g.document!.dispatchEvent(pasteEvent('hello'));
    expect(sent).toEqual([
      [XK.Control_L, true],
      ['paste', 'hello'],
      [0x76, true],
      [0x76, false],
    ]);
  });

  it('sends the held paste key anyway when no paste event comes', () => {
    vi.useFakeTimers();
    target.dispatchEvent(keyEvent('keydown', 'v', 'KeyV', { ctrlKey: true }));
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(500);
    expect(sent).toEqual([[0x76, true]]);
    target.dispatchEvent(keyEvent('keyup', 'v', 'KeyV'));
    expect(sent).toEqual([
      [0x76, true],
      [0x76, false],
    ]);
  });

  it('releases keys left down under Cmd when Cmd goes up (macOS sends no keyup for them)', () => {
    target.dispatchEvent(keyEvent('keydown', 'Meta', 'MetaLeft', { metaKey: true }));
    target.dispatchEvent(keyEvent('keydown', 'a', 'KeyA', { metaKey: true }));
    target.dispatchEvent(keyEvent('keyup', 'Meta', 'MetaLeft'));
    expect(sent).toEqual([
      [XK.Super_L, true],
      [0x61, true],
      [XK.Super_L, false],
      [0x61, false],
    ]);
  });
});
