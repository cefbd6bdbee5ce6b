// Every process the bench starts, and the one place that stops them all: on success, on an
// error, on Ctrl-C (SIGINT), SIGTERM or SIGHUP. Long-lived children run in their own process
// group (detached), so stopping one also stops what it started (xterm → less).
import { execFile, spawn } from 'node:child_process';

/** Grace between SIGTERM and SIGKILL when stopping a child, ms. */
const STOP_GRACE_MS = 3_000;
/** Output kept per child for error messages, characters. */
const OUTPUT_TAIL_CHARS = 4_000;

/** @type {Set<import('node:child_process').ChildProcess & { label: string, tail: () => string }>} */
const children = new Set();
/** @type {Array<() => Promise<void> | void>} cleanup steps for what is not a child (browser) */
const cleanups = [];
/** @type {Array<() => Promise<void> | void>} steps that need every child gone first (temp dir) */
const finalSteps = [];
let installed = false;
let stopping;

/**
 * Start a long-lived child in its own process group; it is stopped by stopAll() at the latest.
 * @param {string} label a short name for messages
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ env?: NodeJS.ProcessEnv, cwd?: string, extraFds?: number }} [opts]
 *   extraFds: open this many extra pipes after stdio (fd 3, 4, …), e.g. for Xvnc -displayfd 3
 */
export function start(label, cmd, args, opts = {}) {
  const stdio = ['ignore', 'pipe', 'pipe', ...Array(opts.extraFds ?? 0).fill('pipe')];
  const child = /** @type {any} */ (
    spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio, detached: true })
  );
  let out = '';
  const keep = (d) => {
    out = (out + d.toString()).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.label = label;
  child.tail = () => out;
  child.on('error', (err) => keep(`\n[spawn error] ${err.message}\n`));
  children.add(child);
  child.once('exit', (code, signal) => {
    children.delete(child);
    keep(`\n[${label} exited: ${code ?? signal}]\n`);
  });
  return child;
}

function alive(child) {
  return child.exitCode === null && child.signalCode === null;
}

function signalGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/** Stop one child and its process group: SIGTERM, then SIGKILL after a grace period. */
export async function stop(child, graceMs = STOP_GRACE_MS) {
  if (!child || child.pid === undefined) return;
  if (!alive(child)) {
    signalGroup(child, 'SIGKILL'); // the leader is gone; what it left in its group goes too
    return;
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  signalGroup(child, 'SIGKILL');
}

/**
 * Register a cleanup step. 'before' steps run newest first, before the children are stopped
 * (close the browser); 'after' steps run once every child is gone (remove the temp dir).
 * @param {() => Promise<void> | void} fn
 * @param {'before' | 'after'} [when]
 */
export function onCleanup(fn, when = 'before') {
  (when === 'before' ? cleanups : finalSteps).push(fn);
}

async function runSteps(steps) {
  for (const fn of steps.reverse()) {
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`[bench] cleanup step failed: ${err?.message ?? err}\n`);
    }
  }
}

/** Stop everything: cleanup steps, then every child still running, then the final steps. */
export function stopAll() {
  stopping ??= (async () => {
    await runSteps(cleanups);
    await Promise.all([...children].map((c) => stop(c)));
    await runSteps(finalSteps.splice(0));
  })();
  return stopping;
}

/** Make Ctrl-C, SIGTERM, SIGHUP and a plain exit stop every child. Idempotent. */
export function installCleanup() {
  if (installed) return;
  installed = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\n[bench] ${sig}: stopping everything the bench started\n`);
      const hard = setTimeout(() => process.exit(130), STOP_GRACE_MS * 2);
      hard.unref();
      stopAll().finally(() => process.exit(130));
    });
  }
  // last resort, synchronous: whatever is still running when the process exits
  process.on('exit', () => {
    for (const c of children) signalGroup(c, 'SIGKILL');
    // final steps that can run synchronously (removing the temp dir) still run
    for (const fn of finalSteps.splice(0).reverse()) {
      try {
        fn();
      } catch {
        /* best effort on the way out */
      }
    }
  });
}

/**
 * Run a short command to completion; rejects with its stderr on failure or timeout.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ env?: NodeJS.ProcessEnv, timeoutMs?: number, encoding?: BufferEncoding | 'buffer', maxBuffer?: number }} [opts]
 * @returns {Promise<any>} stdout (string, or Buffer with encoding 'buffer')
 */
export function runTool(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 30_000,
        encoding: opts.encoding ?? 'utf8',
        maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `${cmd} ${args.join(' ').slice(0, 200)} failed: ${err.message}\n${String(stderr).slice(-2000)}`,
            ),
          );
        else resolve(stdout);
      },
    );
  });
}
