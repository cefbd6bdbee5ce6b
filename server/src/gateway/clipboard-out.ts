import type { VdiSocket } from './viewer-socket.js';

/** Desktop clipboard on its way to one viewer: at most one in the socket, the newest waiting. */
interface Outbox {
  pending: string | undefined;
  waitingForDrain: boolean;
}

/**
 * The desktop's clipboard to its viewers. A viewer whose socket has not taken the previous
 * message yet (it does not read) gets only the newest text once it does: never more than one
 * clipboard per viewer waits in memory, however often the desktop's clipboard changes.
 */
export class ClipboardOut {
  private readonly outboxes = new WeakMap<VdiSocket, Outbox>();

  send(socket: VdiSocket, text: string): void {
    let out = this.outboxes.get(socket);
    if (!out) {
      out = { pending: undefined, waitingForDrain: false };
      this.outboxes.set(socket, out);
    }
    out.pending = text;
    this.flush(socket, out);
  }

  private flush(socket: VdiSocket, out: Outbox): void {
    if (out.pending === undefined || !socket.connected) return;
    const transport = socket.conn.transport;
    if (!transport.writable) {
      // a send is still on its way (into a full socket, if the viewer does not read)
      if (!out.waitingForDrain) {
        out.waitingForDrain = true;
        transport.once('drain', () => {
          out.waitingForDrain = false;
          this.flush(socket, out);
        });
      }
      return;
    }
    const text = out.pending;
    out.pending = undefined;
    socket.emit('clipboard', { text });
  }
}
