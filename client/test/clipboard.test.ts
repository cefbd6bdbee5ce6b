import { describe, expect, it } from 'vitest';
import { MAX_CLIPBOARD_CHARS } from '@vdi/shared';
import { ClipboardSync } from '../src/viewer/clipboard-sync';

describe('ClipboardSync', () => {
  it('sends local text only when it changed, and never echoes the desktop’s own text back', () => {
    const sent: string[] = [];
    const written: string[] = [];
    const sync = new ClipboardSync({
      send: (t) => (sent.push(t), true),
      writeLocal: async (t) => void written.push(t),
    });
    expect(sync.offer('one')).toBe(true);
    expect(sync.offer('one')).toBe(false);
    sync.fromDesktop('from desktop');
    expect(written).toEqual(['from desktop']);
    expect(sync.offer('from desktop')).toBe(false);
    expect(sync.offer('two')).toBe(true);
    expect(sent).toEqual(['one', 'two']);
  });

  it('tries again later when the text could not be sent', () => {
    let up = false;
    const sync = new ClipboardSync({ send: () => up });
    expect(sync.offer('x')).toBe(false);
    up = true;
    expect(sync.offer('x')).toBe(true);
  });

  it('refuses text over the protocol limit', () => {
    const sync = new ClipboardSync({ send: () => true });
    expect(sync.offer('x'.repeat(MAX_CLIPBOARD_CHARS + 1))).toBe(false);
  });

  it('pulls from the local clipboard when readable', async () => {
    const sent: string[] = [];
    const sync = new ClipboardSync({
      send: (t) => (sent.push(t), true),
      readLocal: async () => 'local',
    });
    await sync.pull();
    await sync.pull();
    expect(sent).toEqual(['local']);
  });

  it('does not overwrite text sent from the panel with the older local clipboard on focus', async () => {
    const sent: string[] = [];
    let local = 'copied earlier';
    const sync = new ClipboardSync({
      send: (t) => (sent.push(t), true),
      readLocal: async () => local,
    });
    await sync.pull(); // the canvas got focus: the local clipboard goes to the desktop
    expect(sync.offer('typed in the panel')).toBe(true); // Send
    await sync.pull(); // Send gives the canvas focus again: the local clipboard did not change
    expect(sent).toEqual(['copied earlier', 'typed in the panel']);
    local = 'copied later'; // the user copies something new elsewhere
    await sync.pull();
    expect(sent.at(-1)).toBe('copied later');
  });

  it('keeps Unicode text as it is', () => {
    const sent: string[] = [];
    const sync = new ClipboardSync({ send: (t) => (sent.push(t), true) });
    sync.offer('Zoë – 東京 🙂');
    expect(sent).toEqual(['Zoë – 東京 🙂']);
  });
});
