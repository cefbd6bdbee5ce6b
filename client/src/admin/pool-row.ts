/** One pool in the pool list: what it is, its sizing, timeouts, status and counts, its buttons. */
import type { AdminPool, Pool } from '@vdi/shared';
import { h } from '../dom';
import { plural, providerLabel, seconds } from '../format';
import { actions, button, row } from './table';

/** What the row's buttons do. */
export interface PoolRowActions {
  edit(): void;
  setDraining(draining: boolean, b: HTMLButtonElement): void;
  desktops(): void;
  remove(): void;
}

/** Counts as "3 desktops · 1 ready · 2 in use · 0 stopped · 2 sessions". */
function countsText(p: AdminPool): string {
  return [
    plural(p.desktops, 'desktop'),
    `${p.ready} ready`,
    `${p.inUse} in use`,
    `${p.stopped} stopped`,
    plural(p.sessions, 'session'),
  ].join(' · ');
}

/** "outbound · 4096 MiB · 1024 tasks" for the pool list */
function limitsSummary(p: Pool): string {
  const t = p.template as { network?: string; limits?: Record<string, number> };
  if (!t.limits) return '';
  const l = t.limits;
  return [
    t.network,
    l.memoryMb ? `${l.memoryMb} MiB` : null,
    l.cpuMax ? `${l.cpuMax} CPU` : null,
    l.pids ? `${l.pids} tasks` : null,
    l.diskMb ? `${l.diskMb} MiB disk` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

export function poolRow(p: AdminPool, act: PoolRowActions): HTMLTableRowElement {
  const drain = p.draining
    ? button('Undrain', (b) => act.setDraining(false, b))
    : button('Drain', (b) => act.setDraining(true, b));
  const tr = row(
    h(
      'div',
      null,
      h('strong', null, p.name),
      p.description ? h('div', { class: 'muted small' }, p.description) : null,
    ),
    h(
      'div',
      null,
      providerLabel[p.provider] ?? p.provider,
      limitsSummary(p) ? h('div', { class: 'muted small' }, limitsSummary(p)) : null,
    ),
    p.assignment === 'dedicated' ? 'Dedicated' : 'Floating',
    `${p.minSize}–${p.maxSize}, ${p.spares} spare${p.spares === 1 ? '' : 's'}, ${p.maxPerUser}/user`,
    h(
      'span',
      { class: 'small' },
      `disconnected ${seconds(p.disconnectedTimeoutSec)} · idle ${seconds(p.idleTimeoutSec)} · max ${seconds(p.maxSessionSec)}`,
    ),
    h(
      'div',
      null,
      p.draining ? h('span', { class: 'tag tag-warn' }, 'Draining') : null,
      h('div', { class: 'small' }, countsText(p)),
    ),
    actions(
      button('Edit', () => act.edit()),
      drain,
      button('Desktops', () => act.desktops()),
      button('Delete', () => act.remove(), 'danger'),
    ),
  );
  tr.dataset.poolId = p.id;
  return tr;
}
