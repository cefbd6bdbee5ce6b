/** A scheduled callback that can be called off. */
export interface TimerHandle {
  cancel(): void;
}

/** Runs `fn` once after `ms`; tests pass one they fire by hand, so nothing waits for real time. */
export type SetTimer = (fn: () => void, ms: number) => TimerHandle;

/** setTimeout that does not keep the process alive. */
export const realTimer: SetTimer = (fn, ms) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
};
