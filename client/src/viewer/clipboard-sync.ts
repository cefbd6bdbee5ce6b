/**
 * Clipboard in both directions, sent only when it changed. The text last seen on either
 * side is remembered, so text that came from the desktop is not echoed back to it. The
 * local clipboard is offered on focus only when it changed since it was last read: text
 * sent from the Clipboard panel is not then overwritten by an older local clipboard.
 */
import { MAX_CLIPBOARD_CHARS } from '@vdi/shared';

export interface ClipboardPorts {
  /** to the desktop; false when it could not be sent (not attached) */
  send(text: string): boolean;
  /** to the local clipboard (may reject: no permission, page not focused) */
  writeLocal?(text: string): Promise<void>;
  /** from the local clipboard, or null when not permitted without asking */
  readLocal?(): Promise<string | null>;
}

export class ClipboardSync {
  private lastSynced: string | null = null;
  /** the local clipboard as last read (or written by us); null before the first read */
  private lastLocal: string | null = null;

  constructor(private readonly ports: ClipboardPorts) {}

  /** The desktop's clipboard changed. */
  fromDesktop(text: string): void {
    this.lastSynced = text;
    this.ports.writeLocal?.(text).then(
      () => void (this.lastLocal = text),
      () => {
        // no permission or not focused: the clipboard panel still shows the text
      },
    );
  }

  /** Local text to give the desktop; sent only if it differs from what both sides have. */
  offer(text: string): boolean {
    if (text === this.lastSynced || text.length > MAX_CLIPBOARD_CHARS) return false;
    if (!this.ports.send(text)) return false;
    this.lastSynced = text;
    return true;
  }

  /**
   * Read the local clipboard (when permitted without a prompt) and offer it if it changed
   * since the last read: what the user copied elsewhere meanwhile, not what was there before.
   */
  async pull(): Promise<void> {
    let text: string | null;
    try {
      text = (await this.ports.readLocal?.()) ?? null;
    } catch {
      return;
    }
    if (text === null || text === this.lastLocal) return;
    this.lastLocal = text;
    this.offer(text);
  }
}

/**
 * navigator.clipboard.readText, but only where the permission is already granted: asking on
 * every focus would pop a prompt each time. Firefox has no 'clipboard-read' permission name;
 * there the paste event and the panel are the ways in.
 */
export async function readClipboardIfGranted(): Promise<string | null> {
  if (!navigator.clipboard?.readText || !document.hasFocus()) return null;
  try {
    const status = await navigator.permissions.query({ name: 'clipboard-read' as PermissionName });
    if (status.state !== 'granted') return null;
  } catch {
    return null;
  }
  return navigator.clipboard.readText();
}

export async function writeClipboard(text: string): Promise<void> {
  if (!navigator.clipboard?.writeText || !document.hasFocus()) return;
  await navigator.clipboard.writeText(text);
}
