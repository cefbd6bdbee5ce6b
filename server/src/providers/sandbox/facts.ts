import { z } from 'zod';
import { NetworkMode, type DesktopIsolation, type ProviderKind } from '@vdi/shared';
import type { DesktopHandle } from '../types.js';
import { Cgroups, type CgroupRef } from './cgroups.js';

/**
 * What the admin console shows about a desktop's isolation: its account, network, limits and
 * live usage, read from the provider's handle (the fields the xvnc and qemu providers record)
 * and from the desktop's cgroup.
 */

const Limits = z.object({
  cpuWeight: z.number(),
  cpuMax: z.number(),
  memoryMb: z.number(),
  pids: z.number(),
  diskMb: z.number().default(0),
});

/** the isolation fields of a handle, whichever provider wrote it */
const IsolationFields = z.object({
  isolation: z.enum(['sandbox', 'account', 'none']).optional(),
  account: z.object({ uid: z.number(), name: z.string() }).optional(),
  /** the qemu provider's account */
  runAs: z.object({ user: z.string(), uid: z.number() }).optional(),
  cgroup: z.object({ dirs: z.array(z.string()) }).optional(),
  network: NetworkMode.optional(),
  limits: Limits.optional(),
  /** qemu: the cgroup memory limit actually written (guest RAM + overhead when 0 = auto) */
  memoryLimitMb: z.number().optional(),
});

/** CPU readings kept per cgroup for the "% now" figure; older ones are dropped */
const SAMPLE_TTL_MS = 10 * 60_000;
/** at most this many cgroups remembered (a bound, whatever happens to desktops) */
const MAX_SAMPLES = 10_000;

export class IsolationFacts {
  private readonly samples = new Map<string, { cpuSeconds: number; at: number }>();
  private cgroups: Cgroups | undefined | null = null;

  private cg(): Cgroups | undefined {
    if (this.cgroups === null) {
      const found = Cgroups.detect();
      this.cgroups = typeof found === 'string' ? undefined : found;
    }
    return this.cgroups;
  }

  /** null for desktops the server does not run itself (existing VNC servers) */
  of(kind: ProviderKind, handle: DesktopHandle | undefined, now: number): DesktopIsolation | null {
    if (kind === 'vnc' || !handle) return null;
    const parsed = IsolationFields.safeParse(handle);
    if (!parsed.success) return null;
    const h = parsed.data;
    const usage = h.cgroup ? this.usage(h.cgroup, now) : null;
    if (kind === 'qemu') {
      return {
        mode: 'vm',
        uid: h.runAs?.uid ?? null,
        account: h.runAs?.user ?? null,
        network: null,
        limits:
          h.cgroup && h.limits
            ? { ...h.limits, memoryMb: h.memoryLimitMb ?? h.limits.memoryMb }
            : null,
        usage,
        note: h.runAs
          ? h.cgroup
            ? null
            : 'no cgroup: limits not enforced'
          : 'QEMU runs as the server account (the server is not root)',
      };
    }
    const mode = h.isolation ?? 'none';
    let note: string | null = null;
    if (mode === 'none')
      note =
        'not isolated: the server does not run as root, so desktops run as its own account and share its namespaces';
    else if (!h.cgroup) note = 'no cgroup: limits not enforced';
    else if (mode === 'account')
      note = 'own account and limits, but the host namespaces (/tmp, processes, network)';
    return {
      mode,
      uid: h.account?.uid ?? null,
      account: h.account?.name ?? null,
      network: mode === 'sandbox' ? (h.network ?? null) : 'host',
      limits: h.cgroup && h.limits ? h.limits : null,
      usage,
      note,
    };
  }

  private usage(ref: CgroupRef, now: number): DesktopIsolation['usage'] {
    const cg = this.cg();
    const u = cg?.usage(ref);
    if (!cg || !u) return null;
    const key = ref.dirs[0] ?? '';
    const prev = this.samples.get(key);
    let cpuPercent: number | null = null;
    if (prev && now > prev.at)
      cpuPercent = Math.max(0, ((u.cpuSeconds - prev.cpuSeconds) * 1000 * 100) / (now - prev.at));
    this.samples.set(key, { cpuSeconds: u.cpuSeconds, at: now });
    this.prune(now);
    return {
      cpuSeconds: Math.round(u.cpuSeconds * 100) / 100,
      cpuPercent: cpuPercent === null ? null : Math.round(cpuPercent * 10) / 10,
      memoryBytes: u.memoryBytes,
      tasks: u.tasks,
      oomKills: cg.oomKills(ref),
    };
  }

  private prune(now: number): void {
    for (const [k, s] of this.samples) if (now - s.at > SAMPLE_TTL_MS) this.samples.delete(k);
    while (this.samples.size > MAX_SAMPLES) {
      const oldest = this.samples.keys().next().value;
      if (oldest === undefined) break;
      this.samples.delete(oldest);
    }
  }
}
