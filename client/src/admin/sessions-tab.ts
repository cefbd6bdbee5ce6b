/**
 * Live sessions, refreshed every 2 s. Rows are keyed by session id and updated in place,
 * so buttons stay put under the pointer (and under a test's click) between refreshes.
 */
import type { ProviderKind } from '@vdi/shared';
import { openDialog } from '../dialog';
import { field, h, select } from '../dom';
import { api, seg } from '../http';
import { ago, kbps, num, when } from '../format';
import type { Tab, TabContext } from './tab';
import type { AdminPool, AdminSession } from './types';
import { busy, button, dataTable } from './table';
import { isolationDetails, isolationText } from './isolation';

/** Table refresh period, ms. */
const REFRESH_MS = 2000;
/** Thumbnail refresh period, ms. */
const THUMB_MS = 5000;
/** Pool list (for provider kinds) refresh period, ms. */
const POOLS_MS = 30_000;

interface RowView {
  tr: HTMLTableRowElement;
  thumb: HTMLImageElement;
  cells: Record<
    'user' | 'pool' | 'desktop' | 'account' | 'state' | 'since' | 'viewers' | 'kbps' | 'fps',
    HTMLTableCellElement
  >;
  actions: HTMLElement;
  actionsKey: string;
  session: AdminSession;
}

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
  const rows = new Map<string, RowView>();
  const providers = new Map<string, ProviderKind>();
  let disposed = false;
  let loading = false;
  let poolsAt = -Infinity;

  const post = (path: string, done: string, body?: unknown) => (b: HTMLButtonElement | null) =>
    busy(
      b,
      async () => {
        await api.post(path, body);
        flash.ok(done);
        await refresh();
      },
      (err) => flash.error(err),
    );

  function message(s: AdminSession): void {
    const text = h('textarea', { rows: 3, required: true, maxLength: 2000 });
    openDialog({
      title: `Message to ${s.username}`,
      body: [field('Message', text, 'Shown as a banner in the user’s viewer')],
      actions: [
        {
          label: 'Send message',
          variant: 'primary',
          run: async () => {
            await api.post(`/api/admin/sessions/${seg(s.id)}/message`, { text: text.value.trim() });
            flash.ok(`Message sent to ${s.username}.`);
          },
        },
      ],
    });
  }

  function resetDesktop(s: AdminSession): void {
    openDialog({
      title: `Reset ${s.desktopName}`,
      body: [
        h(
          'p',
          null,
          `Reset the desktop of ${s.username}? Unsaved work in it is lost (a VM is power-cycled, an Xvnc desktop restarted).`,
        ),
      ],
      actions: [
        {
          label: 'Reset now',
          variant: 'danger',
          run: () =>
            post(`/api/admin/sessions/${seg(s.id)}/reset`, `Desktop ${s.desktopName} reset.`)(null),
        },
      ],
    });
  }

  function snapshot(s: AdminSession): void {
    const name = h('input', {
      required: true,
      maxLength: 64,
      pattern: '[A-Za-z0-9._\\-]+',
      value: `snap-${new Date().toISOString().slice(0, 16).replace(/[-:T]/g, '')}`,
    });
    openDialog({
      title: `Snapshot of ${s.desktopName}`,
      body: [field('Snapshot name', name, 'Letters, digits and . _ -')],
      actions: [
        {
          label: 'Take snapshot',
          variant: 'primary',
          run: async () => {
            await api.post(`/api/admin/desktops/${seg(s.desktopId)}/snapshots`, {
              name: name.value.trim(),
            });
            flash.ok(`Snapshot ${name.value.trim()} taken.`);
          },
        },
      ],
    });
  }

  function restore(s: AdminSession): void {
    const list = select([]);
    const dialog = openDialog({
      title: `Restore ${s.desktopName}`,
      body: [field('Snapshot', list)],
      actions: [
        {
          label: 'Restore snapshot',
          variant: 'danger',
          run: async () => {
            if (!list.value) throw new Error('There is no snapshot to restore.');
            await api.post(
              `/api/admin/desktops/${seg(s.desktopId)}/snapshots/${seg(list.value)}/restore`,
            );
            flash.ok(`Restored ${list.value}.`);
          },
        },
      ],
    });
    void api
      .get<string[]>(`/api/admin/desktops/${seg(s.desktopId)}/snapshots`)
      .then((names) => {
        list.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
        if (names.length === 0) dialog.setError('This desktop has no snapshots.');
      })
      .catch((err: unknown) => dialog.setError(err instanceof Error ? err.message : String(err)));
  }

  function power(s: AdminSession): void {
    const action = select([
      ['powerdown', 'Power down (ACPI, the guest shuts down)'],
      ['reset', 'Hard reset'],
      ['stop', 'Pause'],
      ['cont', 'Resume'],
    ]);
    openDialog({
      title: `Power: ${s.desktopName}`,
      body: [field('Power action', action)],
      actions: [
        {
          label: 'Apply',
          variant: 'danger',
          run: async () => {
            await api.post(`/api/admin/desktops/${seg(s.desktopId)}/power`, {
              action: action.value,
            });
            flash.ok(`Power ${action.value} sent to ${s.desktopName}.`);
          },
        },
      ],
    });
  }

  function actionButtons(s: AdminSession, isQemu: boolean): HTMLElement[] {
    const id = seg(s.id);
    const list = [
      button('Shadow', () => {
        window.open(`/desktop/${id}?shadow=1`, '_blank', 'noopener');
      }),
      button('Message', () => message(s)),
      button(
        'Disconnect',
        (b) =>
          void post(
            `/api/admin/sessions/${id}/disconnect`,
            `${s.username} disconnected; the desktop keeps running.`,
          )(b),
      ),
      button(
        'Log off',
        (b) => void post(`/api/admin/sessions/${id}/logoff`, `${s.username} logged off.`)(b),
        'danger',
      ),
      button('Reset desktop', () => resetDesktop(s), 'danger'),
    ];
    if (isQemu) {
      list.push(
        button('Snapshot', () => snapshot(s)),
        button('Restore', () => restore(s)),
        button('Power', () => power(s)),
      );
    }
    return list;
  }

  function thumbUrl(s: AdminSession): string {
    return `/api/admin/desktops/${seg(s.desktopId)}/thumbnail?ts=${Date.now()}`;
  }

  function createRow(s: AdminSession): RowView {
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

  function updateRow(v: RowView, s: AdminSession): void {
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
    const isQemu = (s.provider ?? providers.get(s.poolId)) === 'qemu';
    const key = `${s.desktopId}|${isQemu}`;
    if (key !== v.actionsKey) {
      v.actionsKey = key;
      v.actions.replaceChildren(...actionButtons(s, isQemu));
    }
  }

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
          v = createRow(s);
          rows.set(s.id, v);
        }
        updateRow(v, s);
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
    for (const v of rows.values()) v.thumb.src = thumbUrl(v.session);
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
