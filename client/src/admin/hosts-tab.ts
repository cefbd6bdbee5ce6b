/** Hosts: the machines desktops are placed on (LXD cluster members), their load; drain, limit. */
import type { Host, HostUpdateBody } from '@vdi/shared';
import { openDialog } from '../dialog';
import { field, h } from '../dom';
import { api, seg } from '../http';
import { when } from '../format';
import type { Tab, TabContext } from './tab';
import { actions, button, dataTable, row } from './table';

/** How often the load figures refresh while the tab is open, ms. */
const REFRESH_MS = 10_000;

export function hostsTab({ flash }: TabContext): Tab {
  const table = dataTable('Hosts', [
    'Host',
    'State',
    'Desktops',
    'Load',
    'Address',
    'Last seen',
    'Actions',
  ]);
  table.empty =
    'No hosts: desktops run on this machine. Pools of the lxd provider on an LXD cluster list its members here.';

  async function change(host: Host, body: HostUpdateBody, done: string): Promise<void> {
    try {
      await api.patch(`/api/admin/hosts/${seg(host.id)}`, body);
      flash.ok(done);
      await load();
    } catch (err) {
      flash.error(err, `Could not change ${host.id}`);
    }
  }

  function editLimit(host: Host): void {
    const max = h('input', {
      type: 'number',
      min: '0',
      max: '100000',
      value: String(host.maxSessions),
      required: true,
    });
    openDialog({
      title: `Most desktops on ${host.id}`,
      body: [field('Maximum desktops (0 = no limit)', max)],
      actions: [
        {
          label: 'Save',
          variant: 'primary',
          run: async () => {
            const maxSessions = Number(max.value);
            await api.patch(`/api/admin/hosts/${seg(host.id)}`, {
              maxSessions,
            } satisfies HostUpdateBody);
            flash.ok(`${host.id} takes at most ${maxSessions || 'any number of'} desktops.`);
            await load();
          },
        },
      ],
    });
  }

  function load_(host: Host): string {
    if (host.maxSessions === 0) return `${host.sessions} (no limit)`;
    return `${Math.round((100 * host.sessions) / host.maxSessions)} % of ${host.maxSessions}`;
  }

  function render(hosts: Host[]): void {
    table.setRows(
      hosts.map((host) =>
        row(
          h('strong', null, host.id),
          h(
            'span',
            { class: `badge badge-${host.state}`, title: host.detail },
            host.online ? host.state : `down (${host.detail})`,
          ),
          host.sessions,
          load_(host),
          host.address || '—',
          host.lastSeen ? when(host.lastSeen) : '—',
          actions(
            host.state === 'draining'
              ? button(
                  'Resume',
                  () =>
                    void change(host, { state: 'active' }, `${host.id} takes new desktops again.`),
                )
              : button(
                  'Drain',
                  () =>
                    void change(
                      host,
                      { state: 'draining' },
                      `${host.id} is draining: its desktops stay, new ones go elsewhere.`,
                    ),
                  'danger',
                ),
            button('Limit…', () => editLimit(host)),
          ),
        ),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      render(await api.get<Host[]>('/api/admin/hosts'));
    } catch (err) {
      flash.error(err, 'Could not load hosts');
    }
  }
  void load();
  const timer = setInterval(() => void load(), REFRESH_MS);

  return {
    el: h('div', { class: 'stack' }, table.el),
    dispose: () => clearInterval(timer),
  };
}
