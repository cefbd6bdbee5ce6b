import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { DesktopInput } from '../stream/desktop-stream.js';
import type { Attachment } from './attachments.js';
import { INPUT_COST, spendInput, type InputRates } from './input-budget.js';
import { clampSize } from '../stream/limits.js';
import { gatewayMetrics } from './metrics.js';
import { valid } from './validate.js';
import { fail, type VdiSocket } from './viewer-socket.js';

export interface InputDeps {
  clock: Clock;
  log: Logger;
  rates: InputRates;
  attachmentOf(socket: VdiSocket): Attachment | undefined;
  /** input reached the desktop (the session's idle timeout starts over) */
  noteInput(sessionId: string): void;
}

/**
 * Is this socket allowed to send this input now? Says why not to the viewer where it
 * should hear it (a clipboard that was not sent); dropped keys and pointer moves are only
 * counted, since the next ones make up for them.
 */
function admit(
  socket: VdiSocket,
  d: InputDeps,
  event: string,
  cost: number,
): Attachment | undefined {
  const a = d.attachmentOf(socket);
  if (!a) return void fail(socket, 'NOT_ATTACHED', 'attach to a session first');
  if (a.shadow) return void fail(socket, 'VIEW_ONLY', 'this is a view-only session');
  if (!spendInput(socket.data, d.rates, d.clock.now(), cost)) {
    gatewayMetrics.droppedInput.inc();
    if (event === 'clipboard')
      fail(socket, 'INPUT_RATE', 'too much input at once: the clipboard was not sent');
    return undefined;
  }
  return a;
}

/**
 * Pass admitted input to the desktop. `mustLand`: a desktop that did not take it is busy
 * (not reading); without it, a refusal is the desktop's answer (a size it cannot take).
 */
function deliver(
  socket: VdiSocket,
  d: InputDeps,
  a: Attachment,
  ev: DesktopInput,
  mustLand = true,
): void {
  let sent = false;
  try {
    sent = a.stream.input(ev) || !mustLand;
  } catch (err) {
    d.log.warn({ err, event: ev.kind }, 'input failed');
  }
  if (!sent) {
    gatewayMetrics.droppedInput.inc();
    if (ev.kind === 'clipboard')
      fail(
        socket,
        'DESKTOP_BUSY',
        'the desktop is not accepting input right now: the clipboard was not sent',
      );
    return;
  }
  d.noteInput(a.sessionId);
}

/**
 * The viewer's keys, pointer, clipboard and resize requests, towards its desktop: validated,
 * refused to shadows, within the socket's input budget (input-budget.ts), then given to the
 * desktop's stream.
 */
export function listenForInput(socket: VdiSocket, d: InputDeps): void {
  socket.on('key', (payload) => {
    const m = valid(socket, d.log, 'key', payload);
    if (!m) return;
    const a = admit(socket, d, 'key', INPUT_COST.key);
    if (a) deliver(socket, d, a, { kind: 'key', keysym: m.keysym, down: m.down });
  });
  socket.on('pointer', (payload) => {
    const m = valid(socket, d.log, 'pointer', payload);
    if (!m) return;
    const a = admit(socket, d, 'pointer', INPUT_COST.pointer);
    if (a) deliver(socket, d, a, { kind: 'pointer', x: m.x, y: m.y, buttons: m.buttons });
  });
  socket.on('clipboard', (payload) => {
    const m = valid(socket, d.log, 'clipboard', payload);
    if (!m) return;
    // RFB text is one byte per character: the UTF-16 length bounds it from above
    const a = admit(socket, d, 'clipboard', INPUT_COST.clipboardHeader + m.text.length);
    if (!a) return;
    if (m.text.length > a.limits.maxCutText) {
      // refused by policy, not by the desktop: not counted as dropped input
      fail(
        socket,
        'CLIPBOARD_TOO_LARGE',
        `the clipboard (${m.text.length} characters) is larger than this pool allows (${a.limits.maxCutText} bytes); it was not sent`,
      );
      d.noteInput(a.sessionId);
      return;
    }
    deliver(socket, d, a, { kind: 'clipboard', text: m.text });
  });
  socket.on('resize', (payload) => {
    const m = valid(socket, d.log, 'resize', payload);
    if (!m) return;
    const a = admit(socket, d, 'resize', INPUT_COST.resize);
    if (!a) return;
    // within the pool's range (the viewer clamps too; this is the rule)
    const size = clampSize(m.width, m.height, a.resizeRange, a.limits.maxPixels);
    if (size.width === a.stream.width && size.height === a.stream.height) return;
    // a size the desktop cannot take is not a busy desktop
    deliver(socket, d, a, { kind: 'resize', ...size }, false);
  });
}
