/**
 * One live session's row in the sessions table. Rows are kept and updated in place between
 * refreshes, so buttons stay put under the pointer (and under a test's click).
 */
import type { AdminSession } from '@vdi/shared';
import { h } from '../dom';
import { seg } from '../http';
import { ago, kbps, num, when } from '../format';
import { isolationDetails, isolationText } from './isolation';

export interface SessionRow {
  tr: HTMLTableRowElement;
  thumb: HTMLImageElement;
  cells: Record<
    'user' | 'pool' | 'desktop' | 'account' | 'state' | 'since' | 'viewers' | 'kbps' | 'fps',
    HTMLTableCellElement
  >;
  actions: HTMLElement;
  /** what the buttons were built for: desktop id and kind */
  actionsKey: string;
  session: AdminSession;
}

/** the thumbnail's URL, new each time so the browser fetches it again */
function thumbUrl(s: AdminSession): string {
  return `/api/admin/desktops/${seg(s.desktopId)}/thumbnail?ts=${Date.now()}`;
}

export function reloadThumbnail(v: SessionRow): void {
  v.thumb.src = thumbUrl(v.session);
}

export function createSessionRow(s: AdminSession): SessionRow {
  const thumb = h('img', {
    class: 'thumb',
    alt: `Screen of ${s.desktopName}`,
    width: 120,
    height: 75,
    decoding: 'async',
    src: thumbUrl(s),
  });
  thumb.addEventListener('error', () => thumb.classList.add('thumb-missing'));
  thumb.addEventListener('load', () => thumb.classList.remove('thumb-missing'));
  const td = () => h('td');
  const cells = {
    user: td(),
    pool: td(),
    desktop: td(),
    account: td(),
    state: td(),
    since: td(),
    viewers: td(),
    kbps: td(),
    fps: td(),
  };
  const actionsEl = h('div', { class: 'row-actions' });
  const tr = h(
    'tr',
    { dataset: { sessionId: s.id } },
    h('td', null, thumb),
    cells.user,
    cells.pool,
    cells.desktop,
    cells.account,
    cells.state,
    cells.since,
    cells.viewers,
    cells.kbps,
    cells.fps,
    h('td', null, actionsEl),
  );
  return { tr, thumb, cells, actions: actionsEl, actionsKey: '', session: s };
}

/**
 * Fills the row from `s`, touching only cells whose text changed; the buttons are rebuilt
 * (by `actionsFor`) only when the desktop or its kind changed.
 */
export function updateSessionRow(
  v: SessionRow,
  s: AdminSession,
  isQemu: boolean,
  actionsFor: (s: AdminSession, isQemu: boolean) => HTMLElement[],
): void {
  v.session = s;
  const set = (cell: HTMLTableCellElement, text: string) => {
    if (cell.textContent !== text) cell.textContent = text;
  };
  set(v.cells.user, s.username);
  set(v.cells.pool, s.poolName);
  // VMs say how they run (KVM or TCG software emulation); every fact is in the tooltip
  const facts = s.facts ?? {};
  set(v.cells.desktop, facts.accel ? `${s.desktopName} · ${facts.accel}` : s.desktopName);
  v.cells.desktop.title = Object.entries(facts)
    .map(([k, val]) => `${k}: ${val}`)
    .join('\n');
  set(v.cells.account, isolationText(s.isolation));
  v.cells.account.title = isolationDetails(s.isolation);
  v.cells.account.classList.toggle('form-error', s.isolation?.mode === 'none');
  const unhealthy = s.desktopState && s.desktopState !== 'running' ? s.desktopState : '';
  const stateText = unhealthy ? `${s.state} · desktop ${unhealthy}` : s.state;
  const stateClass = `state state-${unhealthy ? 'unhealthy' : s.state}`;
  const badge = v.cells.state.firstElementChild;
  if (!badge || badge.className !== stateClass || badge.textContent !== stateText) {
    v.cells.state.replaceChildren(h('span', { class: stateClass }, stateText));
  }
  set(v.cells.since, `${when(s.stateSince)} (${ago(s.stateSince)})`);
  set(v.cells.viewers, num(s.viewers));
  set(v.cells.kbps, kbps(s.kbps));
  set(v.cells.fps, num(s.fps));
  v.cells.since.title = s.lastInputAt ? `Last input ${ago(s.lastInputAt)}` : '';
  const key = `${s.desktopId}|${isQemu}`;
  if (key !== v.actionsKey) {
    v.actionsKey = key;
    v.actions.replaceChildren(...actionsFor(s, isQemu));
  }
}
