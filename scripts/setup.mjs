// Set-up shared by `npm start`, `npm test` and `npm run bench`: Debian packages, npm
// packages, build. Plain Node (no dependencies): it runs before node_modules exists.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const root = path.resolve(import.meta.dirname, '..');

/** Debian packages the product needs to run desktops. */
export const RUNTIME_PACKAGES = [
  'tigervnc-standalone-server', // Xvnc
  'tigervnc-tools', // vncpasswd
  'openbox', // window manager of the default desktop
  'xterm',
  'x11-xserver-utils', // xsetroot
  'dbus-x11',
  'fonts-dejavu-core',
  'qemu-system-x86', // VM desktops
  'qemu-utils', // qemu-img: linked clones
  'iproute2', // ss: the gateway checks which account serves a desktop's socket (rfb/peer-uid.ts)
  'bubblewrap', // a sandbox (namespaces, private /tmp) per desktop
  'slirp4netns', // 'outbound' desktop networks: the outside, not the host's loopback
  'util-linux', // setpriv: desktops drop to their own account; mount for home quotas
  'e2fsprogs', // mkfs.ext4: per-home file systems where a pool sets a disk quota
  'pulseaudio', // each desktop's own sound server (providers/xvnc/audio.ts)
  'pulseaudio-utils', // parec records its null sink for the gateway; paplay, pactl
  'ffmpeg', // encodes a desktop's sound as Opus for the browser
];

/** Extra packages for the tests: a browser, X tools, the test VM guest's parts. */
export const TEST_PACKAGES = [
  'chromium',
  'x11-utils', // xev, xprop
  'xdotool',
  'x11-apps', // xwd, xwud
  'xclip',
  'socat', // the isolation suite tries unix and abstract sockets from inside a desktop
  'busybox-static',
  'cpio',
  'e2fsprogs',
  'linux-image-amd64',
  'gcc', // the exact-after-motion and video e2e tests build the bench's animation client (bench-x.c)
  'libc6-dev',
  'libx11-dev',
  'libxext-dev',
  'nginx', // the load balancer in front of several gateway nodes (node-loss test, npm run cluster)
  'postgresql', // the several-node tests' store (a private instance when the local one asks for a password)
  'redis-server', // the several-node tests' Socket.IO adapter
  'lxd', // the lxd provider's tests start their own daemons (server/test/helpers/lxd.ts)
  'debootstrap', // builds their desktop image (infra/lxd/build-image.sh)
  'openssl', // a client certificate for the LXD cluster test
];

/** `npm run cluster`: the load balancer (PostgreSQL and Redis are the operator's). */
export const CLUSTER_PACKAGES = ['nginx'];

/** Everything `npm run bench` needs (server/bench/): noVNC + websockify as the reference, the
 *  desktop, a browser, X tools, and a C compiler for the bench's own X clients. */
export const BENCH_PACKAGES = [
  'novnc',
  'websockify',
  'python3-numpy', // websockify's fast WebSocket masking
  'tigervnc-standalone-server', // Xvnc
  'openbox',
  'xterm',
  'fonts-dejavu-core',
  'x11-xserver-utils', // xsetroot
  'x11-utils', // xprop
  'x11-apps', // xwd: the desktop's own framebuffer
  'xdotool', // typing, scrolling, dragging
  'chromium',
  'gcc', // builds server/bench/x-clients/bench-x.c
  'libc6-dev',
  'libx11-dev',
  'libxext-dev', // MIT-SHM for the animation client
];

function log(msg) {
  process.stdout.write(`[setup] ${msg}\n`);
}

function installed(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

export function ensurePackages(pkgs) {
  if (!fs.existsSync('/usr/bin/dpkg-query')) {
    log(`not a Debian system: make sure these are installed: ${pkgs.join(' ')}`);
    return;
  }
  const missing = pkgs.filter((p) => !installed(p));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `\nThese Debian packages are missing: ${missing.join(' ')}\n` +
        `Install them as root, then run this again:\n  sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}\n\n`,
    );
    process.exit(1);
  }
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-q'], { env });
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env });
}

export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    process.stderr.write(
      `\n[setup] failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})\n`,
    );
    process.exit(r.status || 1);
  }
}

/** npm ci when node_modules is missing or older than the lock file. */
export function ensureNodeModules() {
  const lock = path.join(root, 'package-lock.json');
  const stamp = path.join(root, 'node_modules', '.package-lock.json');
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= fs.statSync(lock).mtimeMs) return;
  log('installing npm packages (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

export function build() {
  process.env.TURBO_TELEMETRY_DISABLED = '1';
  log('building');
  run(path.join(root, 'node_modules', '.bin', 'turbo'), [
    'run',
    'build',
    '--output-logs=errors-only',
  ]);
}

export function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  // the oldest Node every dependency declares support for (eslint 10, Vite 8: 20.19)
  if (major < 20 || (major === 20 && minor < 19)) {
    process.stderr.write(
      `Node ${process.versions.node} is too old: Node 20.19 or newer is needed\n`,
    );
    process.exit(1);
  }
  try {
    execFileSync('npm', ['--version'], { stdio: 'pipe' });
  } catch {
    process.stderr.write('npm is needed\n');
    process.exit(1);
  }
}
