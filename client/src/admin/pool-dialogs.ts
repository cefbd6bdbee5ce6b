/** The pool row's dialogs: edit, delete (with Force delete), and the list of its desktops. */
import type { AdminDesktop, AdminPool, PoolUpdateBody, User } from '@vdi/shared';
import { openDialog } from '../dialog';
import { field, h } from '../dom';
import { ago, when } from '../format';
import { ApiError, api, seg } from '../http';
import { showFieldErrors } from './field-errors';
import type { Flash } from './flash';
import { isolationDetails, isolationText, limitsForm } from './isolation';
import { sizingFields, sizingLayout, sizingValue } from './pool-fields';
import { dataTable, row } from './table';

export interface PoolDialogContext {
  flash: Flash;
  /** reloads the pool list after a change */
  reload(): Promise<void>;
}

/** Edit: name, description, sizing, timeouts, network and limits, and the template as JSON. */
export function editPoolDialog(p: AdminPool, ctx: PoolDialogContext): void {
  const editName = h('input', { required: true, maxLength: 128, value: p.name });
  const editDescription = h('input', { maxLength: 1024, value: p.description });
  const s = sizingFields(p);
  const templateJson = h('textarea', {
    rows: 6,
    spellcheck: false,
    value: JSON.stringify(p.template, null, 2),
  });
  // network and limits as fields of their own; they override the JSON's
  const limits =
    p.provider === 'xvnc' || p.provider === 'qemu' ? limitsForm(p.provider, p.template) : undefined;
  openDialog({
    title: `Edit pool ${p.name}`,
    body: [
      h(
        'div',
        { class: 'form-grid' },
        field('Name', editName),
        field('Description', editDescription),
        ...sizingLayout(s),
        ...(limits?.el ?? []),
        h(
          'div',
          { class: 'span-all' },
          field('Template (JSON)', templateJson, 'Applies to desktops created from now on'),
        ),
      ),
    ],
    actions: [
      {
        label: 'Save pool',
        variant: 'primary',
        run: async () => {
          let templ: Record<string, unknown>;
          try {
            templ = JSON.parse(templateJson.value) as Record<string, unknown>;
          } catch {
            throw new Error('The template is not valid JSON.');
          }
          if (limits) templ = { ...templ, ...limits.value() };
          const body: PoolUpdateBody = {
            name: editName.value.trim(),
            description: editDescription.value.trim(),
            ...sizingValue(s),
          };
          if (JSON.stringify(templ) !== JSON.stringify(p.template)) body.template = templ;
          try {
            await api.patch(`/api/admin/pools/${seg(p.id)}`, body);
          } catch (err) {
            const controls = {
              name: editName,
              description: editDescription,
              template: templateJson,
              ...s,
            };
            const line = showFieldErrors(editName.form ?? document.body, controls, err);
            throw line ? new Error(line) : err;
          }
          ctx.flash.ok(`Pool ${body.name ?? p.name} saved.`);
          await ctx.reload();
        },
      },
    ],
  });
}

/** Delete, and when the pool still has sessions, offer Force delete. */
export function deletePoolDialog(p: AdminPool, ctx: PoolDialogContext): void {
  const attempt = (force: boolean) => async () => {
    try {
      await api.del(`/api/admin/pools/${seg(p.id)}${force ? '?force=true' : ''}`);
    } catch (err) {
      if (!force && err instanceof ApiError && err.code === 'SESSIONS_ACTIVE') {
        dialog.setError(
          `${err.message}. Force delete logs those sessions off and destroys their desktops.`,
        );
        dialog.setActions([{ label: 'Force delete', variant: 'danger', run: attempt(true) }]);
        return false;
      }
      throw err;
    }
    ctx.flash.ok(`Pool ${p.name} deleted.`);
    await ctx.reload();
    return true;
  };
  const dialog = openDialog({
    title: `Delete pool ${p.name}`,
    body: [h('p', null, `Delete the pool ${p.name} and its desktops? This cannot be undone.`)],
    actions: [{ label: 'Delete pool', variant: 'danger', run: attempt(false) }],
  });
}

/** The pool's desktops: one row each under labelled columns, times as dates with times. */
export function poolDesktopsDialog(p: AdminPool): void {
  const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading…'));
  openDialog({ title: `Desktops of ${p.name}`, body: [body], actions: [] });
  void Promise.all([
    api.get<AdminDesktop[]>(`/api/admin/pools/${seg(p.id)}/desktops`),
    // owners by name, not by id (an empty list if the users cannot be read)
    api.get<User[]>('/api/admin/users').catch((): User[] => []),
  ])
    .then(([desktops, users]) => {
      if (desktops.length === 0) {
        body.replaceChildren(h('p', { class: 'muted' }, 'No desktops.'));
        return;
      }
      const userName = new Map(users.map((u) => [u.id, u.username]));
      const t = dataTable('Desktops', [
        'Desktop',
        'State',
        'Health',
        'Owner',
        'Account',
        'In this state since',
        'Details',
        'Error',
      ]);
      t.setRows(
        desktops.map((d) =>
          row(
            h('span', { title: d.id }, d.name),
            d.state,
            d.health,
            d.ownerUserId ? (userName.get(d.ownerUserId) ?? d.ownerUserId) : '—',
            h('span', { title: isolationDetails(d.isolation) }, isolationText(d.isolation)),
            h(
              'time',
              { dateTime: d.stateSince, title: d.stateSince },
              `${when(d.stateSince)} (${ago(d.stateSince)})`,
            ),
            Object.entries(d.facts)
              .map(([k, v]) => `${k}: ${v}`)
              .join(' · ') || '—',
            d.error ?? '—',
          ),
        ),
      );
      body.replaceChildren(t.el);
    })
    .catch((err: unknown) =>
      body.replaceChildren(
        h('p', { class: 'form-error' }, err instanceof Error ? err.message : String(err)),
      ),
    );
}
