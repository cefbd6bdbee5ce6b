/**
 * Which keys the desktop believes are down. A key released while the page is not
 * listening (focus moved to another window, tab hidden, Alt+Tab) would otherwise stay
 * stuck down on the desktop; releaseAll() answers the key-ups it missed.
 */
export class KeyTracker {
  /** physical key (KeyboardEvent.code, or key when code is empty) → keysym sent on press */
  private readonly down = new Map<string, number>();

  /** Record a press. Returns false for an auto-repeat of a key already down. */
  press(id: string, keysym: number): boolean {
    const fresh = !this.down.has(id);
    this.down.set(id, keysym);
    return fresh;
  }

  /**
   * Record a release; returns the keysym to send up: the one sent on press, because the
   * key's value can differ by now ("A" pressed with Shift, released as "a").
   */
  release(id: string): number | undefined {
    const keysym = this.down.get(id);
    this.down.delete(id);
    return keysym;
  }

  /** Forget every pressed key and return their keysyms, most recent first. */
  releaseAll(): number[] {
    const keysyms = [...this.down.values()].reverse();
    this.down.clear();
    return keysyms;
  }

  isDown(id: string): boolean {
    return this.down.has(id);
  }

  get size(): number {
    return this.down.size;
  }
}

/** The tracker's key for an event: the physical key, or the key value for virtual keyboards. */
export function keyId(e: { code: string; key: string }): string {
  return e.code || `key:${e.key}`;
}
