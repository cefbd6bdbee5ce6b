/** Entitlements: grant a pool to a user or a group; revoke. */
import type { AdminPool, Entitlement, EntitlementBody, Group, User } from '@vdi/shared';
import { field, h, select } from '../dom';
import { api, seg } from '../http';
import type { Tab, TabContext } from './tab';
import { actions, busy, button, dataTable, row } from './table';
import { createForm, formAndList } from './tab-layout';

const NONE = '';

export function entitlementsTab({ flash }: TabContext): Tab {
  const pool = select([]);
  pool.required = true;
  const user = select([]);
  const group = select([]);
  const form = createForm({
    title: 'Grant a pool',
    fields: [
      field('Pool', pool),
      field('User', user),
      field('Group', group),
      h('p', { class: 'hint span-all' }, 'Pick a user, a group, or both.'),
    ],
    submit: 'Grant',
    run: async () => {
      const grants: EntitlementBody[] = [];
      if (user.value)
        grants.push({ poolId: pool.value, principalType: 'user', principalId: user.value });
      if (group.value)
        grants.push({ poolId: pool.value, principalType: 'group', principalId: group.value });
      if (!pool.value || grants.length === 0) {
        flash.error(new Error('Choose a pool and a user or a group.'));
        return;
      }
      for (const g of grants) await api.post<Entitlement>('/api/admin/entitlements', g);
      flash.ok('Access granted.');
      user.value = NONE;
      group.value = NONE;
      await load();
    },
    fail: (err) => flash.error(err, 'Could not grant access'),
  });

  const fill = (
    el: HTMLSelectElement,
    items: Array<[string, string]>,
    placeholder: string,
  ): void => {
    const keep = el.value;
    el.replaceChildren(
      h('option', { value: NONE }, placeholder),
      ...items.map(([v, l]) => h('option', { value: v }, l)),
    );
    if (items.some(([v]) => v === keep)) el.value = keep;
  };

  const table = dataTable('Entitlements', ['Pool', 'Granted to', 'Type', 'Actions']);
  table.empty = 'No entitlements yet: nobody can use any pool.';

  function render(list: Entitlement[]): void {
    const sorted = [...list].sort(
      (a, b) =>
        a.poolName.localeCompare(b.poolName) || a.principalName.localeCompare(b.principalName),
    );
    table.setRows(
      sorted.map((en) =>
        row(
          h('strong', null, en.poolName),
          en.principalName,
          h('span', { class: 'tag' }, en.principalType === 'group' ? 'Group' : 'User'),
          actions(
            button(
              'Revoke',
              (b) =>
                void busy(
                  b,
                  async () => {
                    await api.del(`/api/admin/entitlements/${seg(en.id)}`);
                    flash.ok(`Revoked ${en.poolName} from ${en.principalName}.`);
                    await load();
                  },
                  (err) => flash.error(err, 'Could not revoke'),
                ),
              'danger',
            ),
          ),
        ),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      const [list, pools, users, groups] = await Promise.all([
        api.get<Entitlement[]>('/api/admin/entitlements'),
        api.get<AdminPool[]>('/api/admin/pools'),
        api.get<User[]>('/api/admin/users'),
        api.get<Group[]>('/api/admin/groups'),
      ]);
      fill(
        pool,
        pools.map((p) => [p.id, p.name]),
        'Choose a pool…',
      );
      fill(
        user,
        users.map((u) => [u.id, u.username]),
        '— no user —',
      );
      fill(
        group,
        groups.map((g) => [g.id, g.name]),
        '— no group —',
      );
      render(list);
    } catch (err) {
      flash.error(err, 'Could not load entitlements');
    }
  }
  void load();

  return { el: formAndList(form, 'Entitlements', table.el) };
}
