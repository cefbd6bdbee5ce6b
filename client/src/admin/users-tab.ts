/** Users: list, create, enable/disable, role, password reset, group membership, delete. */
import type { Group, User, UserCreateBody, UserUpdateBody } from '@vdi/shared';
import { USERNAME_HINT, Username } from '@vdi/shared';
import { openDialog } from '../dialog';
import { field, h, select } from '../dom';
import { api, seg } from '../http';
import { when } from '../format';
import type { Tab, TabContext } from './tab';
import { actions, busy, button, confirmButton, dataTable, row } from './table';
import { createForm, formAndList } from './tab-layout';

export function usersTab({ me, flash }: TabContext): Tab {
  let groups: Group[] = [];

  // ── create ──
  const username = h('input', {
    required: true,
    autocomplete: 'off',
    spellcheck: false,
    // no maxLength: a browser would cut a long name silently; the check below says why not
  });
  const password = h('input', {
    type: 'password',
    required: true,
    minLength: 8,
    autocomplete: 'new-password',
  });
  const role = select(
    [
      ['user', 'User'],
      ['admin', 'Administrator'],
    ],
    'user',
  );
  const displayName = h('input', { maxLength: 128, autocomplete: 'off' });
  const form = createForm({
    title: 'New user',
    fields: [
      field('Username', username, USERNAME_HINT),
      field('Password', password, 'At least 8 characters'),
      field('Role', role),
      field('Display name', displayName),
    ],
    submit: 'Create user',
    run: async () => {
      // the API's own rule (shared), said before the round trip
      const checked = Username.safeParse(username.value.trim());
      if (!checked.success) throw new Error(`Username: ${checked.error.issues[0]!.message}`);
      const body: UserCreateBody = {
        username: username.value.trim(),
        password: password.value,
        role: role.value as UserCreateBody['role'],
        displayName: displayName.value.trim(),
      };
      await api.post<User>('/api/admin/users', body);
      flash.ok(`User ${body.username} created.`);
      form.reset();
      await load();
    },
    fail: (err) => flash.error(err, 'Could not create the user'),
  });

  // ── list ──
  const table = dataTable('Users', [
    'Username',
    'Display name',
    'Role',
    'Status',
    'Groups',
    'Created',
    'Actions',
  ]);
  table.empty = 'No users.';

  const patch = (u: User, body: UserUpdateBody, done: string) => (b: HTMLButtonElement) =>
    void busy(
      b,
      async () => {
        await api.patch(`/api/admin/users/${seg(u.id)}`, body);
        flash.ok(done);
        await load();
      },
      (err) => flash.error(err, `Could not update ${u.username}`),
    );

  function resetPassword(u: User): void {
    const input = h('input', {
      type: 'password',
      required: true,
      minLength: 8,
      autocomplete: 'new-password',
    });
    openDialog({
      title: `Reset password of ${u.username}`,
      body: [field('New password', input, 'At least 8 characters')],
      actions: [
        {
          label: 'Set password',
          variant: 'primary',
          run: async () => {
            await api.patch(`/api/admin/users/${seg(u.id)}`, {
              password: input.value,
            } satisfies UserUpdateBody);
            flash.ok(`Password of ${u.username} reset.`);
          },
        },
      ],
    });
  }

  function editGroups(u: User): void {
    if (groups.length === 0) {
      flash.error(new Error('There are no groups yet. Create one on the Groups tab.'));
      return;
    }
    const boxes = groups.map((g) => {
      const wasMember =
        g.members.includes(u.id) || u.groups.includes(g.id) || u.groups.includes(g.name);
      const box = h('input', { type: 'checkbox', value: g.id, checked: wasMember });
      return { g, box, wasMember, el: h('label', { class: 'check' }, box, g.name) };
    });
    openDialog({
      title: `Groups of ${u.username}`,
      body: [
        h(
          'fieldset',
          { class: 'checks' },
          h('legend', null, 'Member of'),
          ...boxes.map((b) => b.el),
        ),
      ],
      actions: [
        {
          label: 'Save groups',
          variant: 'primary',
          run: async () => {
            for (const { g, box, wasMember } of boxes) {
              if (box.checked === wasMember) continue;
              const others = g.members.filter((id) => id !== u.id);
              const userIds = box.checked ? [...others, u.id] : others;
              await api.put(`/api/admin/groups/${seg(g.id)}/members`, { userIds });
            }
            flash.ok(`Groups of ${u.username} saved.`);
            await load();
          },
        },
      ],
    });
  }

  function groupNames(u: User): string {
    const byId = new Map(groups.map((g) => [g.id, g.name]));
    const names = new Set<string>(u.groups.map((g) => byId.get(g) ?? g));
    for (const g of groups) if (g.members.includes(u.id)) names.add(g.name);
    return [...names].sort().join(', ') || '—';
  }

  function render(users: User[]): void {
    table.setRows(
      users.map((u) => {
        const self = u.id === me.id;
        const tr = row(
          h('strong', null, u.username),
          u.displayName || '—',
          h(
            'span',
            { class: `tag ${u.role === 'admin' ? 'tag-admin' : ''}` },
            u.role === 'admin' ? 'Administrator' : 'User',
          ),
          h(
            'span',
            { class: `state ${u.disabled ? 'state-ended' : 'state-active'}` },
            u.disabled ? 'Disabled' : 'Enabled',
          ),
          groupNames(u),
          when(u.createdAt),
          actions(
            self
              ? null
              : u.role === 'admin'
                ? button('Make user', patch(u, { role: 'user' }, `${u.username} is now a user.`))
                : button(
                    'Make admin',
                    patch(u, { role: 'admin' }, `${u.username} is now an administrator.`),
                  ),
            self
              ? null
              : u.disabled
                ? button('Enable', patch(u, { disabled: false }, `${u.username} enabled.`))
                : button('Disable', patch(u, { disabled: true }, `${u.username} disabled.`)),
            button('Reset password', () => resetPassword(u)),
            button('Groups…', () => editGroups(u)),
            self
              ? null
              : confirmButton(
                  'Delete',
                  {
                    title: 'Delete user',
                    question: `Delete ${u.username}? Their sessions are logged off.`,
                    confirm: 'Delete user',
                  },
                  async () => {
                    await api.del(`/api/admin/users/${seg(u.id)}`);
                    flash.ok(`${u.username} deleted.`);
                    await load();
                  },
                  (err) => flash.error(err, `Could not delete ${u.username}`),
                ),
          ),
        );
        tr.dataset.userId = u.id;
        return tr;
      }),
    );
  }

  async function load(): Promise<void> {
    try {
      const [users, gs] = await Promise.all([
        api.get<User[]>('/api/admin/users'),
        api.get<Group[]>('/api/admin/groups').catch(() => [] as Group[]),
      ]);
      groups = gs;
      render(users);
    } catch (err) {
      flash.error(err, 'Could not load users');
    }
  }
  void load();

  return { el: formAndList(form, 'Users', table.el) };
}
