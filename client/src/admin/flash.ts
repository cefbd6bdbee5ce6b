/** The admin console's one-line feedback above the tab: a success that fades, or an error that stays. */
import { browserClock, type Cancel, type Clock } from '../clock';
import { h } from '../dom';
import { ApiError, errorMessage } from '../http';

/** How long a success line stays, ms. */
const OK_SHOWN_MS = 4000;

export interface Flash {
  ok(message: string): void;
  error(err: unknown, prefix?: string): void;
  clear(): void;
}

export function makeFlash(clock: Clock = browserClock): { el: HTMLElement; flash: Flash } {
  const okLine = h('p', {
    class: 'flash flash-ok',
    hidden: true,
    attrs: { 'aria-live': 'polite' },
  });
  const errLine = h('p', { class: 'flash flash-error', hidden: true, attrs: { role: 'alert' } });
  let hideOk: Cancel = () => {};
  const flash: Flash = {
    ok(message) {
      errLine.hidden = true;
      okLine.textContent = message;
      okLine.hidden = false;
      hideOk();
      hideOk = clock.after(OK_SHOWN_MS, () => (okLine.hidden = true));
    },
    error(err, prefix) {
      if (err instanceof ApiError && err.status === 401) return; // on the way to the sign-in page
      okLine.hidden = true;
      errLine.textContent = prefix ? `${prefix}: ${errorMessage(err)}` : errorMessage(err);
      errLine.hidden = false;
    },
    clear() {
      okLine.hidden = true;
      errLine.hidden = true;
    },
  };
  return { el: h('div', { class: 'flash-area' }, okLine, errLine), flash };
}
