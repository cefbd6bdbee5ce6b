/** Groups: create, delete, set members. */
import type { Group, User } from '@vdi/shared';
import { openDialog } from '../dialog';
import { field, h } from '../dom';
import { api, seg } from '../http';
import type { Tab, TabContext } from './tab';
import { actions, button, confirmButton, dataTable, row } from './table';
import { createForm, formAndList } from './tab-layout';

export function groupsTab({ flash }: TabContext): Tab {
  let users: User[] = [];

  const name = h('input', { required: true, maxLength: 128, autocomplete: 'off' });
  const description = h('input', { maxLength: 1024, autocomplete: 'off' });
  const form = createForm({
    title: 'New group',
    fields: [field('Name', name), field('Description', description)],
    submit: 'Create group',
    run: async () => {
      const body = { name: name.value.trim(), description: description.value.trim() };
      await api.post<Group>('/api/admin/groups', body);
      flash.ok(`Group ${body.name} created.`);
      form.reset();
      await load();
    },
    fail: (err) => flash.error(err, 'Could not create the group'),
  });

  const table = dataTable('Groups', ['Name', 'Description', 'Members', 'Actions']);
  table.empty = 'No groups yet.';

  function editMembers(g: Group): void {
    const boxes = users.map((u) => {
      const box = h('input', { type: 'checkbox', value: u.id, checked: g.members.includes(u.id) });
      return { u, box, el: h('label', { class: 'check' }, box, u.username) };
    });
    openDialog({
      title: `Members of ${g.name}`,
      body: [
        boxes.length
          ? h(
              'fieldset',
              { class: 'checks' },
              h('legend', null, 'Members'),
              ...boxes.map((b) => b.el),
            )
          : h('p', null, 'There are no users yet.'),
      ],
      actions: [
        {
          label: 'Save members',
          variant: 'primary',
          run: async () => {
            const userIds = boxes.filter((b) => b.box.checked).map((b) => b.u.id);
            await api.put(`/api/admin/groups/${seg(g.id)}/members`, { userIds });
            flash.ok(`Members of ${g.name} saved.`);
            await load();
          },
        },
      ],
    });
  }

  function render(groups: Group[]): void {
    const names = new Map(users.map((u) => [u.id, u.username]));
    table.setRows(
      groups.map((g) =>
        row(
          h('strong', null, g.name),
          g.description || '—',
          g.members
            .map((id) => names.get(id) ?? id)
            .sort()
            .join(', ') || '—',
          actions(
            button('Members…', () => editMembers(g)),
            confirmButton(
              'Delete',
              {
                title: 'Delete group',
                question: `Delete the group ${g.name}? Its entitlements go with it.`,
                confirm: 'Delete group',
              },
              async () => {
                await api.del(`/api/admin/groups/${seg(g.id)}`);
                flash.ok(`Group ${g.name} deleted.`);
                await load();
              },
              (err) => flash.error(err, `Could not delete ${g.name}`),
            ),
          ),
        ),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      const [gs, us] = await Promise.all([
        api.get<Group[]>('/api/admin/groups'),
        api.get<User[]>('/api/admin/users').catch(() => [] as User[]),
      ]);
      users = us;
      render(gs);
    } catch (err) {
      flash.error(err, 'Could not load groups');
    }
  }
  void load();

  return { el: formAndList(form, 'Groups', table.el) };
}
