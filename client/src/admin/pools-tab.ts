/**
 * Pools: the create form (per-provider template, pool-fields.ts) above the list (pool-row.ts);
 * edit, delete and the desktop list are dialogs (pool-dialogs.ts); drain and undrain in place.
 */
import type { AdminPool, Pool, PoolCreateBody, PoolUpdateBody, ProviderKind } from '@vdi/shared';
import { clear, field, h, select } from '../dom';
import { api, seg } from '../http';
import {
  deletePoolDialog,
  editPoolDialog,
  poolDesktopsDialog,
  type PoolDialogContext,
} from './pool-dialogs';
import { TEMPLATE_FORMS, sizingFields, sizingLayout, sizingValue } from './pool-fields';
import { showFieldErrors } from './field-errors';
import { poolRow } from './pool-row';
import type { Tab, TabContext } from './tab';
import { busy, dataTable } from './table';
import { createForm, formAndList } from './tab-layout';

export function poolsTab({ flash }: TabContext): Tab {
  // ── create ──
  const name = h('input', { required: true, maxLength: 128, autocomplete: 'off' });
  const description = h('input', { maxLength: 1024, autocomplete: 'off' });
  const provider = select(
    [
      ['xvnc', 'xvnc (Linux desktop)'],
      ['qemu', 'qemu (virtual machine)'],
      ['vnc', 'vnc (existing hosts)'],
      ['lxd', 'lxd (containers on an LXD cluster)'],
    ],
    'xvnc',
  );
  const assignment = select(
    [
      ['floating', 'Floating'],
      ['dedicated', 'Dedicated'],
    ],
    'floating',
  );
  const sizing = sizingFields();
  const templateSlot = h('fieldset', { class: 'template' });
  let template = TEMPLATE_FORMS.xvnc();
  const showTemplate = (): void => {
    const kind = provider.value as ProviderKind;
    template = TEMPLATE_FORMS[kind]();
    clear(templateSlot);
    templateSlot.append(h('legend', null, `Template (${kind})`), template.el);
  };
  provider.addEventListener('change', showTemplate);
  showTemplate();

  const form = createForm({
    title: 'New pool',
    fields: [
      field('Name', name),
      field('Description', description),
      field('Provider', provider),
      field('Assignment', assignment, 'Floating: any free desktop. Dedicated: one per user, kept.'),
      ...sizingLayout(sizing),
      h('div', { class: 'span-all' }, templateSlot),
    ],
    submit: 'Create pool',
    run: async () => {
      const body = {
        name: name.value.trim(),
        description: description.value.trim(),
        provider: provider.value,
        assignment: assignment.value,
        ...sizingValue(sizing),
        template: template.value(),
      } as PoolCreateBody;
      await api.post<Pool>('/api/admin/pools', body);
      flash.ok(`Pool ${body.name} created.`);
      form.reset();
      showTemplate();
      await load();
    },
    fail: (err) => {
      const line = showFieldErrors(form, { name, description, ...sizing }, err);
      flash.error(line ? new Error(line) : err, 'Could not create the pool');
    },
  });

  // ── list ──
  const table = dataTable('Pools', [
    'Name',
    'Provider',
    'Assignment',
    'Size',
    'Timeouts',
    'Status',
    'Actions',
  ]);
  table.empty = 'No pools yet.';

  const dialogs: PoolDialogContext = { flash, reload: () => load() };

  function render(pools: AdminPool[]): void {
    table.setRows(
      pools.map((p) =>
        poolRow(p, {
          edit: () => editPoolDialog(p, dialogs),
          setDraining: (draining, b) => void setDraining(p, draining, b),
          desktops: () => poolDesktopsDialog(p),
          remove: () => deletePoolDialog(p, dialogs),
        }),
      ),
    );
  }

  async function setDraining(p: AdminPool, draining: boolean, b: HTMLButtonElement): Promise<void> {
    await busy(
      b,
      async () => {
        await api.patch(`/api/admin/pools/${seg(p.id)}`, { draining } satisfies PoolUpdateBody);
        flash.ok(
          draining
            ? `Pool ${p.name} is draining: no new sessions.`
            : `Pool ${p.name} takes sessions again.`,
        );
        await load();
      },
      (err) => flash.error(err, `Could not update ${p.name}`),
    );
  }

  async function load(): Promise<void> {
    try {
      render(await api.get<AdminPool[]>('/api/admin/pools'));
    } catch (err) {
      flash.error(err, 'Could not load pools');
    }
  }
  void load();

  return { el: formAndList(form, 'Pools', table.el) };
}
