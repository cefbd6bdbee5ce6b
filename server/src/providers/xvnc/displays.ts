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
