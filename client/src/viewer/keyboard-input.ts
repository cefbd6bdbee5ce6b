/**
 * Keyboard → key events for the desktop. Listens on the focused canvas; keys it sends have
 * their browser default prevented (Tab, Backspace, arrows, Ctrl+W… stay in the desktop),
 * except the paste shortcut, which the browser needs to fire its paste event: that key is
 * held back until the pasted text has been sent, so the desktop pastes the new clipboard.
 */
import { keysymFromEvent, XK } from '@vdi/shared';
import { KeyTracker, keyId } from './key-tracker';

/** How long the paste shortcut waits for the browser's paste event, ms. */
const PASTE_WAIT_MS = 150;

export interface KeyboardPorts {
  send(keysym: number, down: boolean): boolean;
  /** false while view-only or not attached: keys are left to the browser */
  enabled(): boolean;
  /** text from a paste event while the canvas had focus */
  pasted(text: string): void;
  /**
   * The keysym of a key event by the user's keyboard layout (keyboard-layout.ts): a keysym,
   * null to keep the key from the desktop (AltGr itself), undefined for the browser's own
   * reading of the key.
   */
  translate?(e: KeyboardEvent): number | null | undefined;
}

interface HeldKey {
  id: string;
  keysym: number;
  released: boolean;
  timer: ReturnType<typeof setTimeout>;
}

function isPasteShortcut(e: KeyboardEvent): boolean {
  return (e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 'v';
}

const META_KEYSYMS: ReadonlySet<number> = new Set([XK.Super_L, XK.Super_R, XK.Meta_L, XK.Meta_R]);

export class KeyboardInput {
  readonly tracker = new KeyTracker();
  private held: HeldKey | null = null;
  private readonly cleanup: Array<() => void> = [];

  constructor(
    private readonly target: HTMLElement,
    private readonly ports: KeyboardPorts,
  ) {
    this.listen<KeyboardEvent>(target, 'keydown', (e) => this.onKeyDown(e));
    this.listen<KeyboardEvent>(target, 'keyup', (e) => this.onKeyUp(e));
    this.listen(target, 'blur', () => this.releaseAll());
    this.listen(window, 'blur', () => this.releaseAll());
    this.listen(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.releaseAll();
    });
    this.listen<ClipboardEvent>(document, 'paste', (e) => this.onPaste(e));
  }

  /** Send key-ups for everything still down (focus lost: the key-ups would go elsewhere). */
  releaseAll(): void {
    this.dropHeld();
    for (const keysym of this.tracker.releaseAll()) this.ports.send(keysym, false);
  }

  /** Forget pressed keys without sending (the connection is gone; the server releases them). */
  forget(): void {
    this.dropHeld();
    this.tracker.releaseAll();
  }

  dispose(): void {
    this.releaseAll();
    for (const off of this.cleanup) off();
    this.cleanup.length = 0;
  }

  private onKeyDown(e: KeyboardEvent): void {
    if (!this.ports.enabled()) return;
    if (e.isComposing) return; // IME composition owns these keys
    const mapped = this.ports.translate?.(e);
    if (mapped === null) {
      e.preventDefault(); // AltGr: a level of the next key, not a key of its own
      return;
    }
    const keysym = mapped ?? keysymFromEvent(e);
    if (keysym === undefined) return; // "Dead", "Unidentified", "Process": nothing to send
    this.flushHeld();
    const id = keyId(e);
    this.tracker.press(id, keysym);
    if (isPasteShortcut(e) && !e.repeat) {
      this.held = {
        id,
        keysym,
        released: false,
        timer: setTimeout(() => this.flushHeld(), PASTE_WAIT_MS),
      };
      return; // default kept: the browser fires 'paste' next
    }
    e.preventDefault();
    this.ports.send(keysym, true);
  }

  private onKeyUp(e: KeyboardEvent): void {
    this.ports.translate?.(e); // AltGr released
    const id = keyId(e);
    if (this.held && this.held.id === id) {
      this.held.released = true;
      e.preventDefault();
      return;
    }
    this.flushHeld();
    const keysym = this.tracker.release(id);
    if (keysym === undefined) return; // pressed before the canvas had focus
    e.preventDefault();
    this.ports.send(keysym, false);
    // macOS sends no keyup for keys released while Cmd is down: release them with Cmd
    if (META_KEYSYMS.has(keysym)) {
      for (const other of this.tracker.releaseAll()) this.ports.send(other, false);
    }
  }

  private onPaste(e: ClipboardEvent): void {
    if (document.activeElement !== this.target) return;
    e.preventDefault();
    const text = e.clipboardData?.getData('text/plain');
    if (text) this.ports.pasted(text);
    this.flushHeld();
  }

  /** Send the held paste key now (after the paste event, or when it never came). */
  private flushHeld(): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    clearTimeout(held.timer);
    this.ports.send(held.keysym, true);
    if (held.released) {
      this.tracker.release(held.id);
      this.ports.send(held.keysym, false);
    }
  }

  private dropHeld(): void {
    if (!this.held) return;
    clearTimeout(this.held.timer);
    this.tracker.release(this.held.id);
    this.held = null;
  }

  private listen<E extends Event>(
    target: EventTarget,
    type: string,
    handler: (e: E) => void,
  ): void {
    const fn = handler as EventListener;
    target.addEventListener(type, fn);
    this.cleanup.push(() => target.removeEventListener(type, fn));
  }
}
