import fs from 'node:fs';
import net from 'node:net';

/** Field 22 of /proc/<pid>/stat: start time in clock ticks, tells a reused pid apart. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces and parentheses: split after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

/** Is this exact process (pid + start time) still alive and not a zombie? */
export function processAlive(pid: number, startTime: string | undefined): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return false;
    return startTime === undefined || rest[19] === startTime;
  } catch {
    return false;
  }
}

/** Process state letter from /proc (R, S, T = stopped, Z = zombie…), undefined when gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** Signal a whole process group, ignoring "no such process". */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* already gone */
  }
}

/** SIGTERM the groups, wait up to `graceMs` for the leaders to exit, then SIGKILL. */
export async function stopGroups(
  procs: { pid: number; startTime?: string | undefined }[],
  graceMs = 3000,
): Promise<void> {
  const live = procs.filter((p) => processAlive(p.pid, p.startTime));
  for (const p of live) killGroup(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && live.some((p) => processAlive(p.pid, p.startTime))) {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const p of live) if (processAlive(p.pid, p.startTime)) killGroup(p.pid, 'SIGKILL');
}

/**
 * Connect to an RFB endpoint and read the 12-byte version banner. 'ok' when it looks like
 * RFB, 'silent' when the socket accepts but says nothing in time (a stopped server), 'refused'
 * when nothing listens.
 */
export function probeRfb(
  target: { path: string } | { host: string; port: number },
  timeoutMs = 2000,
): Promise<'ok' | 'silent' | 'refused' | 'garbage'> {
  return new Promise((resolve) => {
    const sock =
      'path' in target ? net.connect(target.path) : net.connect(target.port, target.host);
    let buf = Buffer.alloc(0);
    const done = (r: 'ok' | 'silent' | 'refused' | 'garbage') => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('silent'), timeoutMs);
    sock.on('error', () => done('refused'));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 12)
        done(
          /^RFB \d{3}\.\d{3}\n$/.test(buf.subarray(0, 12).toString('latin1')) ? 'ok' : 'garbage',
        );
    });
    sock.on('close', () => done(buf.length ? 'garbage' : 'refused'));
  });
}

export async function waitFor<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
