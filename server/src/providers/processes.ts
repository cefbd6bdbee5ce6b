import fs from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * The desktops' processes on this host, as the providers see them: their state from /proc,
 * a pid told apart from a reused one by its start time, signals to a whole process group,
 * and waiting for processes to go or for something to be ready.
 */

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
