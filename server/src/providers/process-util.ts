import fs from 'node:fs/promises';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { RfbEndpoint } from './types.js';

// ---- processes -------------------------------------------------------------------------

/** between two checks whether a process has exited */
const EXIT_POLL_MS = 50;

/** The fields of /proc/<pid>/stat the providers use. */
export interface ProcStat {
  /** state letter: R, S, D, T = stopped, Z = zombie, X = dead… */
  state: string;
  /** process group id: equals the pid when the process leads its group (spawned detached) */
  pgrp: number;
  /** field 22, start time in clock ticks after boot: a reused pid has another */
  startTime: string;
}

export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // field 2 (comm) is in parentheses and may itself contain spaces or ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const [state, , pgrp] = fields;
  const startTime = fields[19];
  if (state === undefined || pgrp === undefined || startTime === undefined) return undefined;
  return { state, pgrp: Number(pgrp), startTime };
}

/** A process we started: its pid and, when recorded, its start time (tells a reused pid apart). */
export interface ProcessRef {
  pid: number;
  startTime?: string | undefined;
}

export type ProcessCheck =
  { alive: true; stat: ProcStat } | { alive: false; why: 'gone' | 'reused' | 'exited' };

/** Is this exact process (pid and, when given, start time) still there and not a zombie? */
export async function checkProcess(p: ProcessRef): Promise<ProcessCheck> {
  const stat = await readProcStat(p.pid);
  if (!stat) return { alive: false, why: 'gone' };
  if (p.startTime !== undefined && stat.startTime !== p.startTime)
    return { alive: false, why: 'reused' };
  if (stat.state === 'Z' || stat.state === 'X') return { alive: false, why: 'exited' };
  return { alive: true, stat };
}

export async function processAlive(p: ProcessRef): Promise<boolean> {
  return (await checkProcess(p)).alive;
}

/** Waits up to `ms` for all of these processes to exit; false when one is still there. */
export async function waitGone(procs: readonly ProcessRef[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    let anyAlive = false;
    for (const p of procs) if (await processAlive(p)) anyAlive = true;
    if (!anyAlive) return true;
    if (Date.now() >= deadline) return false;
    await delay(EXIT_POLL_MS);
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

/**
 * Signals the process's group when it leads one (so helpers it started go too), else the
 * process alone; nothing when it has exited or its pid now names another process.
 */
export async function signalProcess(p: ProcessRef, signal: NodeJS.Signals): Promise<void> {
  const check = await checkProcess(p);
  if (!check.alive) return;
  if (check.stat.pgrp === p.pid) {
    killGroup(p.pid, signal);
    return;
  }
  try {
    process.kill(p.pid, signal);
  } catch {
    /* exited meanwhile */
  }
}

/** SIGTERM the groups, wait up to `graceMs` for the leaders to exit, then SIGKILL. */
export async function stopGroups(procs: readonly ProcessRef[], graceMs = 3000): Promise<void> {
  const live: ProcessRef[] = [];
  for (const p of procs) if (await processAlive(p)) live.push(p);
  for (const p of live) killGroup(p.pid, 'SIGTERM');
  if (await waitGone(live, graceMs)) return;
  for (const p of live) if (await processAlive(p)) killGroup(p.pid, 'SIGKILL');
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
    await delay(intervalMs);
  }
}

// ---- RFB endpoints -----------------------------------------------------------------------

/** "RFB xxx.yyy\n": the ProtocolVersion message of RFC 6143 section 7.1.1 is exactly 12 bytes */
const RFB_BANNER_BYTES = 12;
const RFB_BANNER = /^RFB \d{3}\.\d{3}\n$/;
/** connect errors that mean nothing listens there (rather than a fault on the way) */
const REFUSED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

export type ProbeResult =
  | { ok: true; version: string }
  | {
      ok: false;
      /**
       * refused: nothing listens; error: any other socket error (a missing unix socket is
       * ENOENT); timeout: no banner in time; not-rfb: a wrong banner, or a hang-up before one
       */
      kind: 'refused' | 'timeout' | 'not-rfb' | 'error';
      reason: string;
      /** bytes the endpoint sent before the probe gave up */
      received: number;
    };

/**
 * Connects, reads the 12-byte RFB ProtocolVersion banner and hangs up before answering it
 * (so the server does not wait for authentication from us).
 */
export function probeRfb(endpoint: RfbEndpoint, timeoutMs: number): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    const socket =
      endpoint.kind === 'unix'
        ? net.createConnection({ path: endpoint.path })
        : net.createConnection({ host: endpoint.host, port: endpoint.port });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const fail = (kind: 'refused' | 'timeout' | 'not-rfb' | 'error', reason: string): void =>
      finish({ ok: false, kind, reason, received: received.length });
    const timer = setTimeout(() => {
      fail(
        'timeout',
        received.length === 0 && socket.connecting
          ? `no ${endpoint.kind === 'tcp' ? 'TCP ' : ''}connection within ${timeoutMs} ms`
          : `no RFB banner within ${timeoutMs} ms`,
      );
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < RFB_BANNER_BYTES) return;
      const banner = received.subarray(0, RFB_BANNER_BYTES).toString('latin1');
      if (RFB_BANNER.test(banner)) finish({ ok: true, version: banner.slice(4, 11) });
      else fail('not-rfb', `not an RFB server (banner ${JSON.stringify(banner)})`);
    });
    socket.on('end', () => {
      fail('not-rfb', `connection closed after ${received.length} bytes, before an RFB banner`);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      fail(
        err.code !== undefined && REFUSED_CODES.has(err.code) ? 'refused' : 'error',
        `${err.code ?? 'error'}: ${err.message}`,
      );
    });
  });
}
