/** Audit log: filter by action, actor, target and time; newest first. */
import type { AuditEntry } from '@vdi/shared';
import { field, h } from '../dom';
import { api } from '../http';
import { when } from '../format';
import type { Tab, TabContext } from './tab';
import { dataTable, row } from './table';
import { formAndList } from './tab-layout';

/** Longest detail text shown in a cell; the full JSON is in the tooltip. */
const DETAIL_CHARS = 160;

export function auditTab({ flash }: TabContext): Tab {
  const action = h('input', {
    maxLength: 64,
    autocomplete: 'off',
    placeholder: 'e.g. session.end',
  });
  const actor = h('input', { maxLength: 64, autocomplete: 'off' });
  const target = h('input', { maxLength: 128, autocomplete: 'off' });
  const since = h('input', { type: 'datetime-local' });
  const limit = h('input', { type: 'number', min: '1', max: '1000', value: '200' });
  const filterBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter');
  const form = h(
    'form',
    { class: 'card form-grid form-inline' },
    field('Action', action),
    field('Actor', actor),
    field('Target', target),
    field('Since', since),
    field('Limit', limit),
    h('div', { class: 'form-actions' }, filterBtn),
  );
  const table = dataTable('Audit log', ['Time', 'Action', 'Actor', 'Target', 'Detail', 'IP']);
  table.empty = 'No matching entries.';

  async function load(): Promise<void> {
    const q = new URLSearchParams();
    if (action.value.trim()) q.set('action', action.value.trim());
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (target.value.trim()) q.set('target', target.value.trim());
    if (since.value) {
      const d = new Date(since.value); // datetime-local is local time
      if (!Number.isNaN(d.getTime())) q.set('since', d.toISOString());
    }
    if (limit.value) q.set('limit', limit.value);
    filterBtn.disabled = true;
    try {
      const entries = await api.get<AuditEntry[]>(`/api/admin/audit?${q.toString()}`);
      entries.sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || b.id - a.id);
      table.setRows(
        entries.map((e) => {
          const detail =
            e.detail === undefined || e.detail === null ? '' : JSON.stringify(e.detail);
          const detailEl = h(
            'code',
            { class: 'detail', title: detail },
            detail.length > DETAIL_CHARS ? `${detail.slice(0, DETAIL_CHARS)}…` : detail,
          );
          return row(
            h('time', { dateTime: e.at, title: e.at }, when(e.at)),
            h('code', null, e.action),
            e.actor ?? '—',
            e.target ? h('span', { title: e.target }, e.targetName ?? e.target) : '—',
            detail ? detailEl : '—',
            e.ip ?? '—',
          );
        }),
      );
    } catch (err) {
      flash.error(err, 'Could not load the audit log');
    } finally {
      filterBtn.disabled = false;
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  void load();

  return { el: formAndList(form, 'Audit log', table.el) };
}
