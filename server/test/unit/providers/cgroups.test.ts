import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Cgroups } from '../../../src/providers/sandbox/cgroups.js';

// The cgroup module's reading of the host's layout and the files it writes, for cgroup v2
// (which this project's reference machine does not run) and v1, on trees laid out in a temp
// dir. Real cgroups (v1 + v2 hybrid) are in test/integration/xvnc-sandbox.test.ts and the
// isolation suite.

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-cgroups-unit-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const put = (file: string, text = '') => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
};
const read = (file: string) => fs.readFileSync(file, 'utf8');
const limits = { cpuWeight: 50, cpuMax: 1.5, memoryMb: 300, pids: 64 };

describe('cgroup v2', () => {
  const setup = () => {
    const mount = path.join(root, 'cg2');
    put(path.join(mount, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    put(path.join(mount, 'cgroup.subtree_control'), '\n');
    put(path.join(mount, 'vdi', 'cgroup.subtree_control'), '\n');
    const cg = Cgroups.detect({
      parent: '/vdi',
      mountinfo: `40 30 0:37 / ${mount} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n`,
      procSelfCgroup: '0::/system.slice/vdi.service\n',
    });
    if (typeof cg === 'string') throw new Error(cg);
    return { mount, cg };
  };

  it('enables cpu, memory and pids down to the parent and writes the limits', () => {
    const { mount, cg } = setup();
    expect(cg.layout).toBe('v2');
    const ref = cg.create('tag.x.d1', limits);
    const dir = path.join(mount, 'vdi', 'tag.x.d1');
    expect(ref.dirs).toEqual([dir]);
    expect(read(path.join(mount, 'cgroup.subtree_control'))).toBe('+cpu +memory +pids');
    expect(read(path.join(mount, 'vdi', 'cgroup.subtree_control'))).toBe('+cpu +memory +pids');
    expect(read(path.join(dir, 'cpu.weight'))).toBe('50');
    expect(read(path.join(dir, 'cpu.max'))).toBe('150000 100000');
    expect(read(path.join(dir, 'memory.max'))).toBe(String(300 * 1024 * 1024));
    expect(read(path.join(dir, 'pids.max'))).toBe('64');
    expect(cg.procsFiles(ref)).toEqual([path.join(dir, 'cgroup.procs')]);
  });

  it('writes "max" for no limit, and keeps swap at zero under a memory limit', () => {
    const { mount, cg } = setup();
    const dir = path.join(mount, 'vdi', 'tag.x.d2');
    put(path.join(dir, 'memory.swap.max'), 'max\n');
    const ref = cg.create('tag.x.d2', limits);
    expect(read(path.join(dir, 'memory.swap.max'))).toBe('0');
    cg.applyLimits(ref, { cpuWeight: 100, cpuMax: 0, memoryMb: 0, pids: 0 });
    expect(read(path.join(dir, 'cpu.max'))).toBe('max 100000');
    expect(read(path.join(dir, 'memory.max'))).toBe('max');
    expect(read(path.join(dir, 'memory.swap.max'))).toBe('max');
    expect(read(path.join(dir, 'pids.max'))).toBe('max');
  });

  it('reads usage from cpu.stat, memory.current and pids.current', () => {
    const { mount, cg } = setup();
    const ref = cg.create('tag.x.d3', limits);
    const dir = path.join(mount, 'vdi', 'tag.x.d3');
    put(path.join(dir, 'cpu.stat'), 'usage_usec 2500000\nuser_usec 2000000\n');
    put(path.join(dir, 'memory.current'), '104857600\n');
    put(path.join(dir, 'pids.current'), '12\n');
    put(path.join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    expect(cg.usage(ref)).toEqual({ cpuSeconds: 2.5, memoryBytes: 104857600, tasks: 12 });
    expect(cg.oomKills(ref)).toBe(1);
  });

  it('says what to do when the parent cannot pass controllers down', () => {
    const { mount, cg } = setup();
    // a group holding processes refuses: stand-in, a subtree_control that cannot be written
    fs.rmSync(path.join(mount, 'vdi', 'cgroup.subtree_control'));
    fs.mkdirSync(path.join(mount, 'vdi', 'cgroup.subtree_control'));
    fs.writeFileSync(path.join(mount, 'vdi', 'cgroup.subtree_control', 'x'), '');
    expect(() => cg.create('tag.x.d4', limits)).toThrow(/CGROUP_PARENT/);
  });

  it('puts the parent below the server’s own cgroup when it is relative', () => {
    const mount = path.join(root, 'cg2');
    put(path.join(mount, 'cgroup.controllers'), 'cpu memory pids\n');
    const cg = Cgroups.detect({
      mountinfo: `40 30 0:37 / ${mount} rw - cgroup2 cgroup2 rw\n`,
      procSelfCgroup: '0::/user.slice/vdi.service\n',
    });
    if (typeof cg === 'string') throw new Error(cg);
    expect(cg.list('x')).toEqual([]);
    expect(cg.describe()).toBe('cgroup v2');
  });
});

describe('cgroup v1 (and the v1 + v2 hybrid)', () => {
  const setup = (withUnified: boolean) => {
    const base = path.join(root, 'fs');
    const mounts = ['cpu', 'cpuacct', 'memory', 'pids', 'freezer'].map(
      (c, i) => `${31 + i} 30 0:${28 + i} / ${base}/${c} rw,relatime - cgroup cgroup rw,${c}`,
    );
    if (withUnified) {
      mounts.push(`40 30 0:37 / ${base}/unified rw,relatime - cgroup2 cgroup2 rw`);
      put(path.join(base, 'unified', 'cgroup.controllers'), '\n');
    }
    const cg = Cgroups.detect({
      mountinfo: mounts.join('\n'),
      procSelfCgroup: '4:memory:/job/42\n8:pids:/\n1:cpu:/\n2:cpuacct:/\n6:freezer:/\n0::/\n',
    });
    if (typeof cg === 'string') throw new Error(cg);
    return { base, cg };
  };

  it('makes one directory per hierarchy, below the server’s own cgroup, with the limits', () => {
    const { base, cg } = setup(true);
    expect(cg.layout).toBe('hybrid');
    // memsw exists where swap accounting is on: it must end up equal to the RAM limit
    put(path.join(base, 'memory', 'job', '42', 'vdi', 'd1', 'memory.memsw.limit_in_bytes'), '-1');
    const ref = cg.create('d1', limits);
    expect(ref.dirs.sort()).toEqual(
      [
        `${base}/unified/vdi/d1`,
        `${base}/cpu/vdi/d1`,
        `${base}/cpuacct/vdi/d1`,
        `${base}/memory/job/42/vdi/d1`,
        `${base}/pids/vdi/d1`,
        `${base}/freezer/vdi/d1`,
      ].sort(),
    );
    expect(read(`${base}/cpu/vdi/d1/cpu.shares`)).toBe('512');
    expect(read(`${base}/cpu/vdi/d1/cpu.cfs_period_us`)).toBe('100000');
    expect(read(`${base}/cpu/vdi/d1/cpu.cfs_quota_us`)).toBe('150000');
    expect(read(`${base}/memory/job/42/vdi/d1/memory.limit_in_bytes`)).toBe(
      String(300 * 1024 * 1024),
    );
    expect(read(`${base}/memory/job/42/vdi/d1/memory.memsw.limit_in_bytes`)).toBe(
      String(300 * 1024 * 1024),
    );
    expect(read(`${base}/pids/vdi/d1/pids.max`)).toBe('64');
    // CPU time from cpuacct (ns), memory from usage_in_bytes, OOM kills from oom_control
    put(`${base}/cpuacct/vdi/d1/cpuacct.usage`, '1500000000\n');
    put(`${base}/memory/job/42/vdi/d1/memory.usage_in_bytes`, '2048\n');
    put(`${base}/memory/job/42/vdi/d1/memory.oom_control`, 'oom_kill_disable 0\noom_kill 2\n');
    put(`${base}/pids/vdi/d1/pids.current`, '7\n');
    expect(cg.usage(ref)).toEqual({ cpuSeconds: 1.5, memoryBytes: 2048, tasks: 7 });
    expect(cg.oomKills(ref)).toBe(2);
  });

  it('works without a v2 tree at all', () => {
    const { cg } = setup(false);
    expect(cg.layout).toBe('v1');
    expect(cg.create('d2', limits).dirs).toHaveLength(5);
  });

  it('refuses names that are not a plain directory name', () => {
    const { cg } = setup(true);
    expect(() => cg.create('../escape', limits)).toThrow(/bad cgroup name/);
  });

  it('needs the cpu, memory and pids controllers', () => {
    expect(
      Cgroups.detect({
        mountinfo: `31 30 0:28 / ${root}/cpu rw - cgroup cgroup rw,cpu`,
        procSelfCgroup: '1:cpu:/\n',
      }),
    ).toBe('no cgroup memory controller is mounted');
  });
});
