import fs from 'node:fs';

/**
 * Host-side views of processes inside a desktop's PID namespace: the server records host pids
 * (they are what /proc, kill() and the broker's health checks use), while the desktop's own
 * programs only know their namespace pids.
 */

/** pids whose parent is `ppid` */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** the inode of a process's PID namespace, e.g. 4026532179 */
export function pidNamespaceOf(pid: number): number | undefined {
  try {
    const m = /^pid:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/ns/pid`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The host pid of the process that is `nsPid` inside the PID namespace `nsInode`. */
export function hostPidOf(nsInode: number, nsPid: number): number | undefined {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    try {
      const m = /^NSpid:\s+([\d\s]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      const ids = m?.[1]?.trim().split(/\s+/).map(Number) ?? [];
      if (ids.at(-1) === nsPid && ids.length > 1 && pidNamespaceOf(pid) === nsInode) return pid;
    } catch {
      /* exited while we looked */
    }
  }
  return undefined;
}

/** the real uid a process runs as */
export function uidOf(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** the short command name (comm) of a process */
export function commOf(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Reads a small file that the desktop's account can write (a pid it reports), refusing
 * symlinks and anything but a regular file: the server runs as root and must not be pointed
 * at other files, nor block on a FIFO.
 */
export function readUntrustedSmallFile(file: string, maxBytes = 256): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(
      file,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
  } catch {
    return undefined;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return undefined;
    const buf = Buffer.alloc(maxBytes);
    const n = fs.readSync(fd, buf, 0, maxBytes, 0);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
