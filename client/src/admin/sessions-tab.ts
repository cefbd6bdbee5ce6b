/**
 * Live sessions, refreshed every 2 s. Rows are keyed by session id and updated in place
 * (session-row.ts); what the row's buttons do is in session-actions.ts.
 */
import type { AdminPool, AdminSession, ProviderKind } from '@vdi/shared';
import { h } from '../dom';
import { api } from '../http';
import { sessionActions, type SessionActionContext } from './session-actions';
import {
  createSessionRow,
  reloadThumbnail,
  updateSessionRow,
  type SessionRow,
} from './session-row';
import type { Tab, TabContext } from './tab';
import { dataTable } from './table';

/** Table refresh period, ms. */
const REFRESH_MS = 2000;
/** Thumbnail refresh period, ms. */
const THUMB_MS = 5000;
/** Pool list (for provider kinds) refresh period, ms. */
const POOLS_MS = 30_000;

export function sessionsTab({ flash }: TabContext): Tab {
  const table = dataTable('Live sessions', [
    'Screen',
    'User',
    'Pool',
    'Desktop',
    'Account & usage',
    'State',
    'Since',
    'Viewers',
    'Bandwidth',
    'FPS',
    'Actions',
  ]);
  table.empty = 'No live sessions.';
  const updated = h('small', { class: 'muted', attrs: { 'aria-live': 'off' } });
  const rows = new Map<string, SessionRow>();
  const providers = new Map<string, ProviderKind>();
  let disposed = false;
  let loading = false;
  let poolsAt = -Infinity;
  const actionContext: SessionActionContext = { flash, refresh: () => refresh() };
  const actionsFor = (s: AdminSession, isQemu: boolean) =>
    sessionActions(s, isQemu, actionContext, (s.provider ?? providers.get(s.poolId)) === 'lxd');

  async function refreshPools(): Promise<void> {
    if (performance.now() - poolsAt < POOLS_MS) return;
    poolsAt = performance.now();
    try {
      const pools = await api.get<AdminPool[]>('/api/admin/pools');
      for (const p of pools) providers.set(p.id, p.provider);
    } catch {
      // provider kinds only decide whether the VM buttons show
    }
  }

  async function refresh(): Promise<void> {
    if (loading || disposed) return;
    loading = true;
    try {
      await refreshPools();
      const list = await api.get<AdminSession[]>('/api/admin/sessions?state=active,disconnected');
      if (disposed) return;
      const seen = new Set<string>();
      const ordered: HTMLTableRowElement[] = [];
      for (const s of list) {
        seen.add(s.id);
        let v = rows.get(s.id);
        if (!v) {
          v = createSessionRow(s);
          rows.set(s.id, v);
        }
        updateSessionRow(v, s, (s.provider ?? providers.get(s.poolId)) === 'qemu', actionsFor);
        ordered.push(v.tr);
      }
      for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
      // re-attach only when membership or order changed, so rows under the pointer stay put
      const currentOrder = [...table.body.children];
      if (
        ordered.length === 0 ||
        ordered.length !== currentOrder.length ||
        ordered.some((tr, i) => currentOrder[i] !== tr)
      ) {
        table.setRows(ordered);
      }
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      flash.error(err, 'Could not load sessions');
    } finally {
      loading = false;
    }
  }

  const tick = window.setInterval(() => {
    if (document.visibilityState === 'visible') void refresh();
  }, REFRESH_MS);
  const thumbTick = window.setInterval(() => {
    if (document.visibilityState !== 'visible') return;
    for (const v of rows.values()) reloadThumbnail(v);
  }, THUMB_MS);
  void refresh();

  return {
    el: h(
      'div',
      { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'Live sessions'), updated),
      table.el,
    ),
    dispose() {
      disposed = true;
      window.clearInterval(tick);
      window.clearInterval(thumbTick);
    },
  };
}
