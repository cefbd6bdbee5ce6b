/**
 * A desktop's isolation for the admin console: its account and live usage in one line, the
 * limits, network and any caveat in the tooltip; and the pool form's network and limit inputs.
 */
import type { DesktopIsolation, NetworkMode } from '@vdi/shared';
import { field, h, select } from '../dom';

const MiB = 1024 * 1024;

function mib(bytes: number): string {
  return bytes >= 1024 * MiB
    ? `${(bytes / 1024 / MiB).toFixed(1)} GiB`
    : `${Math.round(bytes / MiB)} MiB`;
}

/** "vdi-400123 · CPU 3% · 180 MiB of 4.0 GiB · 12 tasks", or why nothing is isolated */
export function isolationText(iso: DesktopIsolation | null | undefined): string {
  if (!iso) return '—';
  if (iso.mode === 'none') return 'not isolated';
  const parts = [iso.account ?? (iso.uid !== null ? `uid ${iso.uid}` : '?')];
  const u = iso.usage;
  if (u) {
    parts.push(
      `CPU ${u.cpuPercent === null ? `${u.cpuSeconds.toFixed(1)} s` : `${Math.round(u.cpuPercent)}%`}`,
    );
    const limit = iso.limits?.memoryMb ? ` of ${mib(iso.limits.memoryMb * MiB)}` : '';
    parts.push(`${mib(u.memoryBytes)}${limit}`);
    parts.push(`${u.tasks} task${u.tasks === 1 ? '' : 's'}`);
    if (u.oomKills > 0) parts.push(`${u.oomKills} killed for memory`);
  }
  return parts.join(' · ');
}

/** every fact, one per line, for a tooltip */
export function isolationDetails(iso: DesktopIsolation | null | undefined): string {
  if (!iso) return '';
  const lines = [`isolation: ${iso.mode}`];
  if (iso.uid !== null) lines.push(`account: ${iso.account ?? '?'} (uid ${iso.uid})`);
  if (iso.network) lines.push(`network: ${iso.network}`);
  const l = iso.limits;
  if (l) {
    lines.push(
      `limits: CPU weight ${l.cpuWeight}${l.cpuMax ? `, at most ${l.cpuMax} CPU` : ''}; ` +
        `memory ${l.memoryMb ? `${l.memoryMb} MiB` : 'no limit'}; ` +
        `${l.pids ? `${l.pids} tasks` : 'no task limit'}; ` +
        `disk ${l.diskMb ? `${l.diskMb} MiB` : 'no quota'}`,
    );
  }
  if (iso.usage) lines.push(`CPU time: ${iso.usage.cpuSeconds.toFixed(1)} s`);
  if (iso.note) lines.push(iso.note);
  return lines.join('\n');
}

// ---- the pool form --------------------------------------------------------------------------

const numberInput = (value: number, min: number, max: number, step = '1'): HTMLInputElement =>
  h('input', {
    type: 'number',
    defaultValue: String(value),
    min: String(min),
    max: String(max),
    step,
    required: true,
  });

export interface LimitsForm {
  el: HTMLElement[];
  /** the template's `limits` (and `network`, for desktops that have one) */
  value(): { limits: Record<string, number>; network?: NetworkMode };
}

/**
 * Inputs for a pool's network and limits, filled from `template` (a pool being edited) or the
 * server's defaults. VMs have no network choice here and their memory 0 means "RAM + QEMU".
 */
export function limitsForm(kind: 'xvnc' | 'qemu', template?: Record<string, unknown>): LimitsForm {
  const t = (template?.limits ?? {}) as Partial<Record<string, number>>;
  const cpuWeight = numberInput(t.cpuWeight ?? 100, 1, 10000);
  const cpuMax = numberInput(t.cpuMax ?? 0, 0, 1024, '0.1');
  const memoryMb = numberInput(t.memoryMb ?? (kind === 'xvnc' ? 4096 : 0), 0, 4 * 1024 * 1024);
  const pids = numberInput(t.pids ?? (kind === 'xvnc' ? 1024 : 256), 0, 4_194_304);
  const diskMb = numberInput(t.diskMb ?? 0, 0, 4 * 1024 * 1024);
  const network = select(
    [
      ['outbound', 'Outbound (the outside, not the host)'],
      ['none', 'None (loopback only)'],
      ['host', "Host (the host's network: trusted pools only)"],
    ],
    (template?.network as string | undefined) ?? 'outbound',
  );
  const el = [
    ...(kind === 'xvnc' ? [field('Network', network, 'What the desktop can reach')] : []),
    field('CPU weight', cpuWeight, 'Share when CPUs are busy; 100 = normal'),
    field('CPU cap (CPUs)', cpuMax, '0 = no cap'),
    field(
      'Memory limit (MiB)',
      memoryMb,
      kind === 'xvnc' ? '0 = no limit' : "0 = the VM's memory plus QEMU's own",
    ),
    field('Process limit', pids, 'Processes and threads; 0 = no limit'),
    ...(kind === 'xvnc' ? [field('Disk quota (MiB)', diskMb, 'Home size; 0 = no quota')] : []),
  ];
  const n = (i: HTMLInputElement) => Number(i.value);
  return {
    el,
    value: () => ({
      limits: {
        cpuWeight: n(cpuWeight),
        cpuMax: n(cpuMax),
        memoryMb: n(memoryMb),
        pids: n(pids),
        ...(kind === 'xvnc' ? { diskMb: n(diskMb) } : {}),
      },
      ...(kind === 'xvnc' ? { network: network.value as NetworkMode } : {}),
    }),
  };
}
