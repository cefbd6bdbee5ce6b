import fs from 'node:fs';
import path from 'node:path';
import type { NetworkMode } from '@vdi/shared';
import type { DesktopAccount } from './accounts.js';

/**
 * How a desktop's processes are started (docs/architecture.md, decision 10):
 *
 * - `sandbox` (the server is root): a small root supervisor joins the desktop's cgroups, then
 *   starts bubblewrap, which makes the desktop's namespaces (PID, IPC, UTS, mount, and network
 *   unless the pool shares the host's) and mounts its view of the file system; inside, setpriv
 *   drops to the desktop's own uid with no capabilities, an empty bounding set and
 *   no_new_privs, and runs the desktop's command. For `outbound` networking the supervisor
 *   attaches slirp4netns to the sandbox's network namespace before the sandbox may run its
 *   command (bubblewrap's --block-fd), and stops it when the sandbox ends.
 * - `account` (root, namespaces turned off): the same account and cgroup, the host's
 *   namespaces.
 * - `none` (the server is not root): the command runs as the server's own account.
 *
 * Why root bwrap + setpriv rather than bwrap's user-namespace mode: the desktop must run as a
 * real, distinct host uid (file ownership of its home, /proc and signal permissions, the RFB
 * socket's peer credentials the gateway checks), which a user namespace would map to a
 * subordinate id only with newuidmap and /etc/subuid entries; and the cgroup placement needs
 * root anyway. The desktop ends up an ordinary unprivileged process in every namespace.
 *
 * Nothing here uses --die-with-parent: desktops outlive the server (decision 2).
 */

export type Isolation = 'sandbox' | 'account' | 'none';

/** a directory of the host and where the desktop sees it */
export interface Bind {
  host: string;
  inside: string;
}

export interface LaunchSpec {
  isolation: Isolation;
  account?: DesktopAccount | undefined;
  /** cgroup.procs files the supervisor joins before anything else runs */
  cgroupProcs: string[];
  /** root-owned directory for the supervisor's files (bwrap's info, the start gate, slirp's log) */
  metaDir: string;
  network: NetworkMode;
  /** sandbox: the desktop's home */
  home?: Bind;
  /** sandbox: the desktop's runtime directory (its sockets, XAUTHORITY) */
  runtime?: Bind;
  /** sandbox: extra writable binds (e.g. the X socket directory at /tmp/.X11-unix) */
  binds?: Bind[];
  /** sandbox: host directories the desktop must not see (the server's data and run dirs) */
  hide?: string[];
  hostname?: string;
  /** supplementary groups the desktop keeps (e.g. kvm for QEMU) */
  groups?: number[];
  /** environment of the desktop's command */
  env: Record<string, string>;
  /** the desktop's command and arguments, run as its account */
  command: string[];
}

export interface Launch {
  argv: string[];
  env: Record<string, string>;
}

/**
 * Closes every descriptor above stderr that the server inherited from whoever started it
 * (Node passes those on to children): none of them is the desktop's business. Bash, because
 * POSIX sh cannot name descriptors above 9.
 */
export const CLOSE_FDS = `for fd in /proc/$$/fd/*; do
  fd=\${fd##*/}
  case $fd in ''|*[!0-9]*|0|1|2) continue ;; esac
  eval "exec $fd>&-"
done
`;

/**
 * The root supervisor of a sandboxed desktop. Joins the cgroups first, so every process of
 * the desktop, including bwrap itself, is counted and killed with it. bwrap reads its options
 * from a root-only file (--args), so the desktop's own `ps` does not show the host paths of
 * its mounts; "$@" is the desktop's command. Exit codes 124–127 are the supervisor's own
 * failures (see SUPERVISOR_EXIT).
 */
const SUPERVISOR = `${CLOSE_FDS}set -u
meta=$VDI_META net=$VDI_NETWORK procs=$VDI_CGROUP_PROCS
unset VDI_META VDI_NETWORK VDI_CGROUP_PROCS
for f in $procs; do echo $$ >"$f" || exit 124; done
info=$meta/info go=$meta/go
rm -f "$info" "$go" "$meta/slirp.ready" && mkfifo -m 600 "$go" || exit 125
bwrap --args 7 -- "$@" 7<"$meta/bwrap.args" 5>"$info" 6<>"$go" &
sandbox=$!
slirp=
if [ "$net" = outbound ]; then
  while ! grep -q '"child-pid"' "$info" 2>/dev/null; do
    kill -0 $sandbox 2>/dev/null || exit 126
    sleep 0.02
  done
  child=$(sed -n 's/.*"child-pid": *\\([0-9][0-9]*\\).*/\\1/p' "$info")
  # the sandbox gives its loopback 127.0.0.1 and then brings it up, and slirp4netns brings it
  # up too; had slirp4netns been first, the kernel would have given lo its address already and
  # the sandbox, refused the same address, would die: slirp4netns starts once lo is up
  until nsenter --net="/proc/$child/ns/net" ip -o link show dev lo up 2>/dev/null | grep -q .; do
    kill -0 $sandbox 2>/dev/null || exit 126
    sleep 0.01
  done
  slirp4netns --configure --mtu=65520 --disable-host-loopback --ready-fd 7 "$child" tap0 \\
    7>"$meta/slirp.ready" >"$meta/slirp.log" 2>&1 &
  slirp=$!
  while [ ! -s "$meta/slirp.ready" ]; do
    kill -0 $slirp 2>/dev/null || { kill -KILL $sandbox; exit 127; }
    kill -0 $sandbox 2>/dev/null || { kill $slirp; wait $sandbox; exit $?; }
    sleep 0.02
  done
fi
echo go >"$go"
wait $sandbox
status=$?
[ -n "$slirp" ] && kill $slirp 2>/dev/null
exit $status
`;

/** what the supervisor's own exit codes mean */
export const SUPERVISOR_EXIT: Record<number, string> = {
  124: 'could not join the desktop cgroup',
  125: 'could not prepare the supervisor directory',
  126: 'bubblewrap could not make the sandbox (where namespaces are not allowed, e.g. in an unprivileged container, set DESKTOP_ISOLATION=account)',
  127: 'slirp4netns failed to set up the network',
};

/** account mode: join the cgroups, then become the desktop's command */
/** CLOSE_FDS but for the descriptors named in $VDI_KEEP_FDS (given to the command on purpose) */
const CLOSE_FDS_BUT_KEPT = `for fd in /proc/$$/fd/*; do
  fd=\${fd##*/}
  case $fd in ''|*[!0-9]*|0|1|2) continue ;; esac
  case " \${VDI_KEEP_FDS:-} " in *" $fd "*) continue ;; esac
  eval "exec $fd>&-"
done
unset VDI_KEEP_FDS
`;

const JOIN_CGROUPS = `${CLOSE_FDS_BUT_KEPT}set -u
procs=$VDI_CGROUP_PROCS
unset VDI_CGROUP_PROCS
for f in $procs; do echo $$ >"$f" || exit 124; done
exec "$@"
`;

/** argv that joins the cgroups (the procs files) and then becomes `command`, same pid */
export function joinCgroupsArgv(
  procs: string[],
  command: string[],
  /** descriptors above stderr the command is given on purpose (a VM's disk) */
  keepFds: readonly number[] = [],
): string[] {
  checkCgroupPaths(procs);
  return [
    '/usr/bin/env',
    `VDI_CGROUP_PROCS=${procs.join(' ')}`,
    `VDI_KEEP_FDS=${keepFds.map((fd) => Math.trunc(fd)).join(' ')}`,
    '/bin/bash',
    '-c',
    JOIN_CGROUPS,
    'vdi-desktop',
    ...command,
  ];
}

/**
 * A short helper command as a desktop's account, outside its sandbox's namespaces but with no
 * network at all (a fresh network namespace) and no privileges (file transfers, sound).
 */
export function asDesktopAccount(account: DesktopAccount, command: string[]): string[] {
  return ['unshare', '--net', '--', ...dropPrivileges(account), ...command];
}

function dropPrivileges(account: DesktopAccount, groups: number[] = []): string[] {
  return [
    'setpriv',
    `--reuid=${account.uid}`,
    `--regid=${account.gid}`,
    groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups',
    // no setuid program (su, passwd…) can give it privileges back
    '--no-new-privs',
    '--bounding-set=-all',
    '--inh-caps=-all',
    '--',
  ];
}

/** paths bwrap mounts a fresh tmpfs on: the desktop's own, empty and private */
const PRIVATE_TMPFS: Array<[string, string]> = [
  ['/tmp', '1777'],
  ['/var/tmp', '1777'],
  ['/dev/shm', '1777'],
  // /run holds the host's service sockets (PostgreSQL, Redis, D-Bus): none of the desktop's business
  ['/run', '0755'],
  ['/home', '0755'],
];

/** bwrap's options (read from a file, see SUPERVISOR) */
function bwrapOptions(spec: LaunchSpec): string[] {
  const a: string[] = ['--unshare-pid', '--unshare-ipc', '--unshare-uts'];
  a.push('--unshare-cgroup-try');
  if (spec.network !== 'host') a.push('--unshare-net');
  a.push('--hostname', spec.hostname ?? 'desktop');
  // the host's file system, read-only; then the private and hidden parts on top
  a.push('--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc');
  for (const [dir, perms] of PRIVATE_TMPFS) a.push('--perms', perms, '--tmpfs', dir);
  a.push('--perms', '0755', '--dir', '/run/user');
  // other desktops' cgroups (names, usage) are not its business either
  if (fs.existsSync('/sys/fs/cgroup')) a.push('--tmpfs', '/sys/fs/cgroup');
  for (const dir of spec.hide ?? []) {
    if (PRIVATE_TMPFS.some(([p]) => dir === p || dir.startsWith(`${p}/`))) continue;
    if (fs.existsSync(dir)) a.push('--tmpfs', dir);
  }
  for (const b of [spec.runtime, spec.home, ...(spec.binds ?? [])]) {
    if (!b) continue;
    // parents bwrap creates on its own are 0700 root, which the desktop could not walk through
    for (const parent of parentsToMake(b.inside)) a.push('--perms', '0755', '--dir', parent);
    a.push('--bind', b.host, b.inside);
  }
  a.push('--ro-bind', passwdFile(spec.metaDir), '/etc/passwd');
  a.push('--ro-bind', groupFile(spec.metaDir), '/etc/group');
  if (spec.home) a.push('--chdir', spec.home.inside);
  // --new-session: no TIOCSTI into a terminal outside; info/block fds: see SUPERVISOR
  a.push('--new-session', '--info-fd', '5', '--block-fd', '6');
  return a;
}

/** directories between a private tmpfs mount and `inside` that bwrap would make 0700 */
function parentsToMake(inside: string): string[] {
  const out: string[] = [];
  for (let d = path.dirname(inside); d !== '/'; d = path.dirname(d)) {
    if (PRIVATE_TMPFS.some(([p]) => p === d) || d === '/run/user') break;
    out.unshift(d);
  }
  return out;
}

function passwdFile(metaDir: string): string {
  return path.join(metaDir, 'passwd');
}
function groupFile(metaDir: string): string {
  return path.join(metaDir, 'group');
}

/**
 * The desktop's own passwd and group files: the host's entries plus its account, so programs
 * that ask "who am I" (shells, ssh, git) get an answer without an entry on the host.
 */
function writeIdentityFiles(metaDir: string, account: DesktopAccount, home: string): void {
  const read = (f: string) => {
    try {
      const text = fs.readFileSync(f, 'utf8');
      return text.endsWith('\n') || text === '' ? text : `${text}\n`;
    } catch {
      return '';
    }
  };
  fs.writeFileSync(
    passwdFile(metaDir),
    `${read('/etc/passwd')}${account.name}:x:${account.uid}:${account.gid}:desktop:${home}:/bin/bash\n`,
    { mode: 0o644 },
  );
  fs.writeFileSync(groupFile(metaDir), `${read('/etc/group')}${account.name}:x:${account.gid}:\n`, {
    mode: 0o644,
  });
}

/** The argv and environment to spawn (detached) for a desktop. */
export function buildLaunch(spec: LaunchSpec): Launch {
  const path_ = spec.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  switch (spec.isolation) {
    case 'none':
      return { argv: spec.command, env: spec.env };
    case 'account': {
      if (!spec.account) throw new Error('account isolation needs an account');
      return {
        argv: [
          '/bin/bash',
          '-c',
          JOIN_CGROUPS,
          'vdi-desktop',
          ...dropPrivileges(spec.account, spec.groups),
          ...spec.command,
        ],
        env: { ...spec.env, PATH: path_, VDI_CGROUP_PROCS: spec.cgroupProcs.join(' ') },
      };
    }
    case 'sandbox': {
      if (!spec.account) throw new Error('sandbox isolation needs an account');
      writeIdentityFiles(spec.metaDir, spec.account, spec.home?.inside ?? '/');
      const options = bwrapOptions(spec);
      if (options.some((o) => o.includes('\0')))
        throw new Error('a sandbox path contains a NUL byte');
      fs.writeFileSync(path.join(spec.metaDir, 'bwrap.args'), `${options.join('\0')}\0`, {
        mode: 0o600,
      });
      return {
        argv: [
          '/bin/bash',
          '-c',
          SUPERVISOR,
          'vdi-desktop',
          ...dropPrivileges(spec.account, spec.groups),
          ...spec.command,
        ],
        env: {
          ...spec.env,
          PATH: path_,
          VDI_META: spec.metaDir,
          VDI_NETWORK: spec.network,
          VDI_CGROUP_PROCS: spec.cgroupProcs.join(' '),
        },
      };
    }
  }
}

/** What bwrap reported about the sandbox it made (its --info-fd). */
export interface SandboxInfo {
  /** host pid of the sandbox's first process: PID 1 of its namespace */
  childPid: number;
  /** inode of its PID namespace */
  pidNamespace: number;
}

export function readSandboxInfo(metaDir: string): SandboxInfo | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(metaDir, 'info'), 'utf8')) as Record<
      string,
      unknown
    >;
    if (typeof j['child-pid'] !== 'number' || typeof j['pid-namespace'] !== 'number')
      return undefined;
    return { childPid: j['child-pid'], pidNamespace: j['pid-namespace'] };
  } catch {
    return undefined; // not written (completely) yet
  }
}

/** cgroup paths go into a space-separated list: refuse anything that would split or glob */
export function checkCgroupPaths(files: string[]): void {
  for (const f of files)
    if (!/^[A-Za-z0-9_./,:@+-]+$/.test(f))
      throw new Error(`cgroup path ${JSON.stringify(f)} has characters the supervisor cannot pass`);
}
