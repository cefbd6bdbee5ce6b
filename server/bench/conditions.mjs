// Waiting on conditions, never on guessed sleeps: poll a check until it holds or a deadline
// passes (and say what we were waiting for), or wait for a line from a child's stdout.

/** Poll period of until(), ms. */
const POLL_MS = 50;

/**
 * Resolve with the first truthy value of `check`; reject after `timeoutMs`.
 * @template T
 * @param {string} what what we wait for, for the error message
 * @param {() => T | Promise<T>} check
 * @param {number} timeoutMs
 * @returns {Promise<T>}
 */
export async function until(what, check, timeoutMs, pollMs = POLL_MS) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Resolve with the first stdout line of `child` matching `re` (its match array).
 * @param {import('node:child_process').ChildProcess & { label?: string, tail?: () => string }} child
 * @param {RegExp} re
 * @param {number} timeoutMs
 * @returns {Promise<RegExpMatchArray>}
 */
export function waitForLine(child, re, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (fn) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      fn();
    };
    const onData = (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = line.match(re);
        if (m) return done(() => resolve(m));
      }
    };
    const onExit = (code, signal) =>
      done(() =>
        reject(
          new Error(
            `${child.label ?? 'process'} exited (${code ?? signal}) before printing ${re}: ${child.tail?.() ?? ''}`,
          ),
        ),
      );
    const timer = setTimeout(
      () =>
        done(() =>
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${child.label ?? 'process'} to print ${re}`,
            ),
          ),
        ),
      timeoutMs,
    );
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}
