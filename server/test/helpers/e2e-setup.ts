import { afterEach } from 'vitest';
import { runningServers } from './process-server.js';

/** Log bytes of each server shown when a step fails: the broker's and gateway's last words. */
const TAIL_BYTES = 6000;

// A browser step that fails says what the page showed; the server's log says why. Every e2e
// file gets this, so a failure seen once in CI explains itself without a re-run.
afterEach((ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  for (const s of runningServers) {
    console.log(`── log of the server on port ${s.port} (last ${TAIL_BYTES} bytes) ──`);
    console.log(s.output.slice(-TAIL_BYTES));
  }
});
