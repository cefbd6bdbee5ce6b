// `npm run setup:lxd`: makes this host an LXD desktop host for the `lxd` provider. Installs
// Debian's lxd and debootstrap, starts the daemon when nothing answers on its socket (no
// systemd needed), initialises it (a storage pool, no network) when it has no storage pool
// yet, builds the desktop image (infra/lxd/build-image.sh, ~80 s) and imports it as
// vdi-desktop. Runs as root. `npm start` never needs any of this.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ensurePackages, root, run } from './setup.mjs';

export const LXD_PACKAGES = ['lxd', 'debootstrap', 'gcc', 'libc6-dev']; // cc: the image's postcopy helper
const SOCKET = '/var/lib/lxd/unix.socket';
const STORAGE_DRIVER = process.env.LXD_STORAGE_DRIVER ?? 'dir';
const IMAGE = process.env.LXD_IMAGE_TAR ?? '/var/cache/vdi-lxd/vdi-desktop.tar';

function log(msg) {
  process.stdout.write(`[setup:lxd] ${msg}\n`);
}

function lxc(args, opts = {}) {
  return spawnSync('lxc', args, { encoding: 'utf8', ...opts });
}

async function answering() {
  return lxc(['query', '/1.0']).status === 0;
}

if (process.getuid?.() !== 0) {
  process.stderr.write('setup:lxd runs as root (it installs packages and starts LXD)\n');
  process.exit(1);
}
ensurePackages(LXD_PACKAGES);

if (!(await answering())) {
  if (spawnSync('systemctl', ['start', 'lxd'], { stdio: 'ignore' }).status !== 0) {
    log('starting lxd (no systemd here)');
    fs.mkdirSync('/var/log/lxd', { recursive: true });
    const child = spawn('lxd', ['--group', 'root', '--logfile', '/var/log/lxd/lxd.log'], {
      detached: true,
      stdio: 'ignore',
    });
    child.unref();
  }
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(SOCKET) || !(await answering())) {
    if (Date.now() > deadline) {
      process.stderr.write('lxd did not answer within 60 s; see /var/log/lxd/lxd.log\n');
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

const pools = JSON.parse(lxc(['query', '/1.0/storage-pools']).stdout || '[]');
if (pools.length === 0) {
  log(`initialising: storage pool "default" (${STORAGE_DRIVER}), no network`);
  const preseed = [
    'storage_pools:',
    '- name: default',
    `  driver: ${STORAGE_DRIVER}`,
    'profiles:',
    '- name: default',
    '  devices:',
    '    root:',
    '      path: /',
    '      pool: default',
    '      type: disk',
    '',
  ].join('\n');
  run('lxd', ['init', '--preseed'], { input: preseed, stdio: ['pipe', 'inherit', 'inherit'] });
}

if (lxc(['image', 'info', 'vdi-desktop']).status === 0 && !process.argv.includes('--rebuild')) {
  log('image vdi-desktop is there already (--rebuild to build it again)');
} else {
  const started = Date.now();
  run('sh', [path.join(root, 'infra/lxd/build-image.sh'), IMAGE, '--import']);
  log(`image built and imported in ${Math.round((Date.now() - started) / 1000)} s`);
}
log('done: create a pool with provider "lxd" in the admin console');
