/**
 * Ending a desktop's processes: Xvnc, the session and everything they started, and, for a
 * sandbox, its supervisor and PID namespace.
 */
import { processAlive, stopGroups, waitGone } from '../processes.js';
import type { Cgroups } from '../sandbox/cgroups.js';
import type { XvncHandle } from './handle.js';

/** how long Xvnc and the session get to exit after SIGTERM at destroy, ms */
const STOP_GRACE_MS = 3000;

/** Ends the processes of the desktop this handle describes, however it is isolated. */
export async function stopDesktop(cgroups: Cgroups | undefined, h: XvncHandle): Promise<void> {
  if (h.isolation === undefined || h.isolation === 'none') {
    await stopGroups([
      { pid: h.sessionPid, startTime: h.sessionStart },
      { pid: h.xvncPid, startTime: h.xvncStart },
    ]);
  } else {
    await killDesktop(cgroups, h);
  }
}

/**
 * Ends every process of the desktop. With a cgroup: SIGTERM to all (Xvnc and the session
 * get a moment to exit cleanly), then the whole cgroup is killed, whatever forked or called
 * setsid. A sandbox without a cgroup ends with its PID namespace's first process.
 */
export async function killDesktop(
  cgroups: Cgroups | undefined,
  h: Pick<XvncHandle, 'cgroup' | 'supervisorPid' | 'supervisorStart'> &
    Partial<
      Pick<
        XvncHandle,
        'xvncPid' | 'xvncStart' | 'sessionPid' | 'sessionStart' | 'initPid' | 'initStart'
      >
    >,
  initPid?: number,
): Promise<void> {
  const main = [
    ...(h.xvncPid !== undefined ? [{ pid: h.xvncPid, startTime: h.xvncStart }] : []),
    ...(h.sessionPid !== undefined ? [{ pid: h.sessionPid, startTime: h.sessionStart }] : []),
  ];
  if (h.cgroup && cgroups) {
    cgroups.signalAll(h.cgroup, 'SIGTERM');
    if (main.length > 0) await waitGone(main, STOP_GRACE_MS);
    await cgroups.remove(h.cgroup);
    return;
  }
  const init = h.initPid ?? initPid;
  if (init !== undefined) {
    const ref = { pid: init, startTime: h.initStart };
    if (await processAlive(ref)) process.kill(init, 'SIGKILL');
    await waitGone([ref], STOP_GRACE_MS);
  }
  const rest = [...main];
  if (h.supervisorPid !== undefined)
    rest.push({ pid: h.supervisorPid, startTime: h.supervisorStart });
  await stopGroups(rest);
}
