/**
 * Who serves the unix socket a connection reached: the accounts (uids) of the processes
 * holding the other end. The gateway checks it before it trusts a desktop's socket, so a
 * program that put its own socket at a desktop's path is refused (docs/architecture.md,
 * decision 10).
 *
 * Node has no SO_PEERCRED. The kernel names our socket's peer in its socket diagnostics,
 * which `ss` (iproute2) prints as inode pairs; /proc then names the processes holding the
 * peer inode and their effective uids. Unlike looking up whichever socket is bound at the
 * path now, this is the socket this very connection reached, so swapping the path back
 * after the connect does not fool it.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import type net from 'node:net';
import { RfbError } from './errors.js';

export interface PeerProcess {
  pid: number;
  uid: number;
}

export class PeerUidError extends Error {
  override name = 'PeerUidError';
}

/** `ss` may run before the server has accept()ed us: the peer then has no inode yet. */
const ACCEPT_RETRIES = 40;
const ACCEPT_RETRY_MS = 25;
const SS_TIMEOUT_MS = 5_000;

/**
 * Why the server at the other end of this unix socket is not to be trusted, or undefined when
 * every process holding it runs as `expected`. Not being able to tell is a reason too.
 */
export async function untrustedServer(
  socket: net.Socket,
  expected: number,
): Promise<RfbError | undefined> {
  try {
    const strangers = (await peerProcesses(socket)).filter((p) => p.uid !== expected);
    if (strangers.length === 0) return undefined;
    return new RfbError(
      'untrusted-server',
      `the socket is served by uid ${strangers.map((p) => `${p.uid} (pid ${p.pid})`).join(', ')}, not the desktop's uid ${expected}; refused`,
    );
  } catch (err) {
    return new RfbError(
      'untrusted-server',
      `could not tell who serves the socket (${(err as Error).message}); refused`,
      { cause: err },
    );
  }
}

/** The processes holding the other end of a connected unix socket. Throws PeerUidError. */
export async function peerProcesses(socket: net.Socket): Promise<PeerProcess[]> {
  // _handle.fd is Node's own descriptor for the socket (internal, but stable on Unix for years)
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new PeerUidError('the socket has no descriptor');
  const ours = socketInode(await fs.readlink(`/proc/self/fd/${fd}`));
  if (ours === undefined) throw new PeerUidError(`descriptor ${fd} is not a socket`);
  let peer = 0;
  for (let i = 0; i < ACCEPT_RETRIES && peer === 0; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
    if (socket.destroyed) throw new PeerUidError('the connection closed during the check');
    peer = peerInode(await listUnixSockets(), ours);
  }
  if (peer === 0) throw new PeerUidError('the server did not accept the connection');
  return holders(peer);
}

/** `socket:[123]` → 123 */
function socketInode(link: string): number | undefined {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

function listUnixSockets(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ss',
      ['-x', '-n', '-H'],
      { timeout: SS_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout) => {
        if (err) {
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          reject(
            new PeerUidError(
              missing
                ? 'ss (Debian package iproute2) is not installed'
                : `ss failed: ${err.message}`,
            ),
          );
        } else resolve(stdout);
      },
    );
  });
}

/**
 * The peer inode of our socket in `ss -xnH` output; 0 when the peer has none yet. Our own
 * socket is unbound, so its row reads `u_str ESTAB 0 0 * <ours> <peer name> <peer>`; the
 * peer's name may hold spaces, its inode is the last field.
 */
export function peerInode(ssOutput: string, ours: number): number {
  const row = new RegExp(`^\\S+\\s+\\S+\\s+\\d+\\s+\\d+\\s+\\*\\s+${ours}\\s+.*?(\\d+)\\s*$`);
  for (const line of ssOutput.split('\n')) {
    const m = row.exec(line);
    if (m) return Number(m[1]);
  }
  throw new PeerUidError(`our socket ${ours} is not in the kernel's list`);
}

/** Processes with the socket inode open, and their effective uids. */
async function holders(inode: number): Promise<PeerProcess[]> {
  const target = `socket:[${inode}]`;
  const pids = (await fs.readdir('/proc')).filter((e) => /^\d+$/.test(e));
  const found: PeerProcess[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      let fds: string[];
      try {
        fds = await fs.readdir(`/proc/${pid}/fd`);
      } catch {
        return; // gone, or not ours to look at
      }
      for (const f of fds) {
        const link = await fs.readlink(`/proc/${pid}/fd/${f}`).catch(() => '');
        if (link !== target) continue;
        const uid = await effectiveUid(pid);
        if (uid !== undefined) found.push({ pid: Number(pid), uid });
        return;
      }
    }),
  );
  if (found.length === 0)
    throw new PeerUidError(`no process that this server can see holds socket ${inode}`);
  return found;
}

async function effectiveUid(pid: string): Promise<number | undefined> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  // Uid: real effective saved filesystem
  const m = /^Uid:\s+\d+\s+(\d+)/m.exec(status);
  return m ? Number(m[1]) : undefined;
}
