/**
 * X display numbers. Sandboxed desktops have their own /tmp and network namespace (and no
 * abstract X socket), so their numbers cannot collide with anything: each is derived from the
 * desktop's uid. Desktops sharing the host's /tmp (`account` isolation, or a server that is
 * not root) take the first number no X server on the host holds.
 */
import fs from 'node:fs';
import path from 'node:path';

export const X11_SOCKET_DIR = '/tmp/.X11-unix';
/**
 * First display number of sandboxed desktops: unique on the host as their uids are, which
 * keeps logs and the admin view unambiguous. The range starts high so a root tool entering a
 * `host`-network desktop never meets an ordinary X server's number.
 */
const SANDBOX_DISPLAY_BASE = 1000;

/** the Xvnc log says the display was taken after our check (another server got there first) */
export const DISPLAY_TAKEN =
  /Server is already active for display|server already active|Address already in use|Cannot establish any listening sockets/i;

/** The display of a sandboxed desktop whose account has `uid`, from a range starting at `uidBase`. */
export function sandboxDisplay(uid: number, uidBase: number): number {
  return SANDBOX_DISPLAY_BASE + (uid - uidBase);
}

/**
 * Does an X server on the host hold display n (a lock file, a socket, an abstract socket), or
 * is one of ours starting on it (`reserved`)?
 */
export function displayTaken(n: number, reserved: Set<number>, abstract: Set<number>): boolean {
  return (
    reserved.has(n) ||
    abstract.has(n) ||
    fs.existsSync(`/tmp/.X${n}-lock`) ||
    fs.existsSync(path.join(X11_SOCKET_DIR, `X${n}`))
  );
}

/** X servers listen on abstract sockets too, which survive a wiped /tmp/.X11-unix */
export function abstractDisplays(): Set<number> {
  const out = new Set<number>();
  try {
    for (const m of fs
      .readFileSync('/proc/net/unix', 'utf8')
      .matchAll(/@\/tmp\/\.X11-unix\/X(\d+)/g))
      out.add(Number(m[1]));
  } catch {
    /* not Linux */
  }
  return out;
}

/** The shared socket directory, made as an X server expects it (sticky, world-writable). */
export function ensureX11SocketDir(): void {
  if (!fs.existsSync(X11_SOCKET_DIR)) {
    fs.mkdirSync(X11_SOCKET_DIR, { mode: 0o1777 });
    fs.chmodSync(X11_SOCKET_DIR, 0o1777);
  }
}

/** Xvnc removes its lock file and socket on a clean exit; after SIGKILL they stay and block the display. */
export function removeDisplayLeftovers(display: number): void {
  fs.rmSync(`/tmp/.X${display}-lock`, { force: true });
  fs.rmSync(path.join(X11_SOCKET_DIR, `X${display}`), { force: true });
}

/** how long a display claim may be held before it is taken for a crashed starter's leftover */
const CLAIM_STALE_MS = 120_000;

/**
 * Claim display n host-wide while an Xvnc starts on it: an exclusive file every server on the
 * host sees (several nodes on one host each keep only their own `reserved` set), so two of
 * them never start on the same number between looking for its lock file and Xvnc making one.
 * Returns the release, or undefined when another starter holds it. `dir` is for tests.
 */
export function claimDisplay(n: number, dir = '/tmp', now = Date.now()): (() => void) | undefined {
  const file = path.join(dir, `.vdi-X${n}-claim`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.closeSync(fs.openSync(file, 'wx', 0o600));
      return () => fs.rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // left by a starter that died mid-start: old enough to be nobody's
      const since = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
      if (since === undefined) continue; // released meanwhile: try again
      if (now - since < CLAIM_STALE_MS) return undefined;
      fs.rmSync(file, { force: true });
    }
  }
  return undefined;
}
