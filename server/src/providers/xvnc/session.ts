/**
 * What runs in a desktop: Xvnc's command line, the init script that starts the pool's session
 * once Xvnc accepts X clients, and the environment the desktop's programs get.
 */
import os from 'node:os';
import path from 'node:path';
import type { XvncTemplate } from '@vdi/shared';
import { CLOSE_FDS } from '../sandbox/launch.js';
import { AUDIO_INIT, pulseServer } from './audio.js';

/**
 * The PATH of a desktop's programs, and so of its launch chain too: bwrap, setpriv and
 * slirp4netns are found on it, which is why status() looks for them here.
 */
export const DESKTOP_PATH = '/usr/local/bin:/usr/bin:/bin';
/** the memory-hungry session, not Xvnc, should be what the OOM killer picks: see INIT */
const SESSION_OOM_SCORE_ADJ = 500;

/** where a sandboxed desktop sees its runtime directory (sockets, XAUTHORITY) */
export const runtimeInside = (uid: number) => `/run/user/${uid}`;

/**
 * Runs as the desktop's account (inside the sandbox when there is one): starts the session
 * once Xvnc accepts X clients (it writes its display number to -displayfd then), and becomes
 * Xvnc, so the desktop lives exactly as long as its X server. "$@" is Xvnc's argv.
 */
const INIT = `${CLOSE_FDS}set -u
session=$VDI_SESSION
unset VDI_SESSION
rt=$XDG_RUNTIME_DIR
rm -f "$rt/xvnc.ready" "$rt/session.pid"
x=$$
(
  while [ ! -s "$rt/xvnc.ready" ]; do
    kill -0 $x 2>/dev/null || exit 0
    sleep 0.02
  done
  echo ${SESSION_OOM_SCORE_ADJ} >/proc/self/oom_score_adj 2>/dev/null
${AUDIO_INIT}  exec /bin/sh -c 'echo $$ >"$XDG_RUNTIME_DIR/session.pid"; exec /bin/sh -c "$1"' vdi-session "$session"
) </dev/null >"$rt/session.log" 2>&1 &
exec "$@" -displayfd 3 3>"$rt/xvnc.ready"
`;

/** The desktop's first command: INIT, which becomes Xvnc with this argv. */
export function initCommand(xvncArgv: string[]): string[] {
  return ['/bin/bash', '-c', INIT, 'vdi-init', ...xvncArgv];
}

/** The environment of the desktop's programs. */
export function sessionEnv(o: {
  display: number;
  home: string;
  runtime: string;
  user: string;
  session: string;
}): Record<string, string> {
  return {
    DISPLAY: `:${o.display}`,
    XAUTHORITY: path.join(o.runtime, 'Xauthority'),
    HOME: o.home,
    USER: o.user,
    LOGNAME: o.user,
    SHELL: '/bin/bash',
    PATH: DESKTOP_PATH,
    LANG: 'C.UTF-8',
    TERM: 'xterm',
    XDG_RUNTIME_DIR: o.runtime,
    PULSE_SERVER: pulseServer(o.runtime),
    VDI_SESSION: o.session,
  };
}

/**
 * Xvnc's argv: RFB only on `<runtime>/rfb.sock` (the path as Xvnc sees it), X only for clients
 * holding the desktop's cookie.
 */
export function xvncArgs(
  binary: string,
  display: number,
  tpl: XvncTemplate,
  desktopId: string,
  runtime: string,
): string[] {
  return [
    binary,
    `:${display}`,
    '-geometry',
    `${tpl.width}x${tpl.height}`,
    '-depth',
    '24',
    '-rfbunixpath',
    path.join(runtime, 'rfb.sock'),
    '-rfbunixmode',
    '0600',
    // no TCP listener at all: the gateway is the only client, over the unix socket
    '-rfbport',
    '-1',
    // X clients: only through the socket in /tmp/.X11-unix (no TCP, no abstract socket,
    // which in a shared network namespace any local process could reach), with the cookie
    '-nolisten',
    'tcp',
    '-nolisten',
    'local',
    '-auth',
    path.join(runtime, 'Xauthority'),
    '-SecurityTypes',
    'None',
    // health checks read the banner and hang up; TigerVNC would count those as failed logins
    '-UseBlacklist=0',
    '-AlwaysShared',
    '-AcceptSetDesktopSize',
    '-desktop',
    `desktop-${desktopId.slice(0, 8)}`,
  ];
}

/** The account the server runs as: a desktop that is not isolated runs as it, too. */
export function serverAccountName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'user'; // a uid with no passwd entry
  }
}
