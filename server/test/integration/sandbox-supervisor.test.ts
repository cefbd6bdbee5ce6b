/**
 * The sandbox supervisor's start of an outbound network, with real slirp4netns and a stand-in
 * for bubblewrap that does what bwrap does in the same order (report the sandbox's first
 * process, then give its loopback 127.0.0.1 with NLM_F_EXCL and bring it up), only slowly.
 * slirp4netns brings lo up too, which gives it 127.0.0.1 at once: had slirp4netns been started
 * as soon as the child was reported, the sandbox's own address request would fail and the
 * sandbox die ("loopback: Failed RTM_NEWADDR", seen in CI under load).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLaunch } from '../../src/providers/sandbox/launch.js';
import { DESKTOP_PATH } from '../../src/providers/xvnc/session.js';

let dir: string;

/**
 * bwrap --args 7 -- cmd… with fds 5 (info) and 6 (block). Its first process waits a little
 * before adding lo's address, as a loaded bwrap would, then waits for the supervisor's go and
 * says what its network looks like.
 */
const FAKE_BWRAP = `#!/bin/bash
unshare --net -- /bin/bash -c '
  sleep 0.3
  ip addr add 127.0.0.1/8 dev lo || { echo "RTM_NEWADDR refused" >&2; exit 3; }
  ip link set lo up || exit 4
  read -r _ <&6
  ip -o -4 addr show dev tap0 | grep -q 10.0.2.100 || { echo "no tap0" >&2; exit 5; }
  echo ready
' &
echo "{\\"child-pid\\": $!, \\"pid-namespace\\": 1}" >&5
exec 5>&-
wait $!
`;

beforeAll(() => {
  expect(process.getuid?.(), 'the supervisor needs root').toBe(0);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-supervisor-'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'bin', 'bwrap'), FAKE_BWRAP, { mode: 0o755 });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function runSupervisor(meta: string): Promise<{ code: number | null; out: string }> {
  fs.mkdirSync(meta);
  const launch = buildLaunch({
    isolation: 'sandbox',
    account: { uid: 65530, gid: 65530, name: 'test' },
    cgroupProcs: [],
    metaDir: meta,
    network: 'outbound',
    env: { PATH: `${path.join(dir, 'bin')}:${DESKTOP_PATH}` },
    command: ['true'],
  });
  return new Promise((resolve, reject) => {
    const child = spawn(launch.argv[0]!, launch.argv.slice(1), {
      env: launch.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('sandbox supervisor, outbound network', () => {
  it('starts slirp4netns only once the sandbox has brought its own loopback up', async () => {
    for (let i = 0; i < 3; i++) {
      const meta = path.join(dir, `meta${i}`);
      const r = await runSupervisor(meta);
      expect(r, fs.readFileSync(path.join(meta, 'slirp.log'), 'utf8')).toEqual({
        code: 0,
        out: 'ready\n',
      });
    }
  });
});
