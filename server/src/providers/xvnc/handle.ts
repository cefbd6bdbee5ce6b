import type { NetworkMode, XvncLimits } from '@vdi/shared';
import type { DesktopAccount } from '../sandbox/accounts.js';
import type { CgroupRef } from '../sandbox/cgroups.js';
import type { Isolation } from '../sandbox/launch.js';
import { ProviderError, type DesktopHandle } from '../types.js';

/** What the store keeps about a running Xvnc desktop; enough to re-adopt it. */
export interface XvncHandle {
  desktopId?: string;
  display: number;
  /** the RFB socket, as the host (the gateway) reaches it */
  socket: string;
  xvncPid: number;
  xvncStart: string | undefined;
  sessionPid: number;
  sessionStart: string | undefined;
  /** the desktop's home on the host */
  home: string;
  width: number;
  height: number;
  /** how the desktop is isolated; absent on handles from before isolation existed */
  isolation?: Isolation;
  /** DISPLAY and XAUTHORITY as the desktop's own programs see them */
  xEnv?: { DISPLAY: string; XAUTHORITY: string };
  account?: DesktopAccount;
  cgroup?: CgroupRef;
  network?: NetworkMode;
  limits?: XvncLimits;
  /** a published application's name: the session is that program (app.ts) */
  app?: string;
  /** sandbox: host pid and start time of the root supervisor (bwrap's parent) */
  supervisorPid?: number;
  supervisorStart?: string | undefined;
  /** sandbox: host pid of the PID namespace's first process; killing it ends the desktop */
  initPid?: number;
  initStart?: string | undefined;
}

/** The Xvnc fields of a stored handle; throws BAD_HANDLE when they are not there. */
export function asHandle(h: DesktopHandle): XvncHandle {
  const v = h as Partial<XvncHandle>;
  if (
    typeof v.display !== 'number' ||
    typeof v.socket !== 'string' ||
    typeof v.xvncPid !== 'number'
  ) {
    throw new ProviderError('BAD_HANDLE', 'not an Xvnc desktop record');
  }
  return v as XvncHandle;
}
