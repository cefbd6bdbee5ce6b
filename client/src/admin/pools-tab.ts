/** Pools: list with counts; create (per-provider template form); edit/resize; drain; delete. */
import type {
  DesktopIsolation,
  Pool,
  PoolCreateBody,
  PoolUpdateBody,
  ProviderKind,
} from '@vdi/shared';
import { openDialog } from '../dialog';
import { clear, field, h, select } from '../dom';
import { ApiError, api, seg } from '../http';
import { providerLabel, seconds } from '../format';
import type { Tab, TabContext } from './tab';
import type { AdminDesktop, AdminPool } from './types';
import { actions, busy, button, dataTable, row } from './table';
import { createForm, formAndList } from './tab-layout';
import { isolationDetails, isolationText, limitsForm } from './isolation';

// defaultValue (the attribute), not value: form.reset() returns to it after a create
const numberInput = (value: number, min: number, max: number): HTMLInputElement =>
  h('input', {
    type: 'number',
    defaultValue: String(value),
    min: String(min),
    max: String(max),
    step: '1',
    required: true,
  });

const int = (input: HTMLInputElement): number => Number.parseInt(input.value, 10);
const optional = (input: HTMLInputElement): string | undefined => input.value.trim() || undefined;

/** The template part of the create form, one per provider. */
interface TemplateForm {
  el: HTMLElement;
  value(): Record<string, unknown>;
}

function xvncTemplate(): TemplateForm {
  const width = numberInput(1280, 320, 8192);
  const height = numberInput(800, 200, 8192);
  // Empty = the server's default session (Openbox starting a terminal once it manages
  // windows, so the terminal has the keyboard focus). A command of our own here would drift
  // from it: "openbox & exec xterm" races Openbox and leaves the terminal unfocused.
  const command = h('input', {
    maxLength: 4096,
    spellcheck: false,
    placeholder: 'Server default: Openbox with a terminal',
  });
  const limits = limitsForm('xvnc');
  return {
    el: h(
      'div',
      { class: 'form-grid' },
      field('Width', width),
      field('Height', height),
      field(
        'Session command',
        command,
        'Shell command run in the desktop: window manager and apps. Empty for the default.',
      ),
      ...limits.el,
    ),
    value: () => ({
      width: int(width),
      height: int(height),
      sessionCommand: optional(command),
      ...limits.value(),
    }),
  };
}

function qemuTemplate(): TemplateForm {
  const image = h('input', {
    required: true,
    maxLength: 4096,
    spellcheck: false,
    placeholder: '/var/lib/vdi/images/desktop.qcow2',
  });
  const kernel = h('input', { maxLength: 4096, spellcheck: false });
  const initrd = h('input', { maxLength: 4096, spellcheck: false });
  const append = h('input', {
    maxLength: 4096,
    spellcheck: false,
    placeholder: 'console=ttyS0 root=/dev/vda',
  });
  const memory = numberInput(256, 64, 65536);
  const vcpus = numberInput(1, 1, 64);
  const limits = limitsForm('qemu');
  return {
    el: h(
      'div',
      { class: 'form-grid' },
      field('Image path', image, 'Golden qcow2 image on the server; desktops are linked clones'),
      field('Kernel', kernel, 'Optional, for images without a boot loader'),
      field('Initrd', initrd),
      field('Kernel arguments', append),
      field('Memory (MB)', memory),
      field('vCPUs', vcpus),
      ...limits.el,
    ),
    value: () => ({
      image: image.value.trim(),
      kernel: optional(kernel),
      initrd: optional(initrd),
      append: optional(append),
      memoryMb: int(memory),
      vcpus: int(vcpus),
      ...limits.value(),
    }),
  };
}

function vncTemplate(): TemplateForm {
  const rows = h('div', { class: 'host-rows' });
  const hosts: Array<{
    host: HTMLInputElement;
    port: HTMLInputElement;
    password: HTMLInputElement;
    title: HTMLInputElement;
    el: HTMLElement;
  }> = [];
  const add = (): void => {
    const host = h('input', {
      required: true,
      maxLength: 255,
      spellcheck: false,
      placeholder: '10.0.0.5',
    });
    const port = numberInput(5900, 1, 65535);
    const password = h('input', { type: 'password', maxLength: 8, autocomplete: 'off' });
    const title = h('input', { maxLength: 128 });
    const entry = { host, port, password, title, el: h('div', { class: 'host-row' }) };
    const remove = button('Remove host', () => {
      if (hosts.length === 1) return;
      hosts.splice(hosts.indexOf(entry), 1);
      entry.el.remove();
    });
    entry.el.append(
      field('Host', host),
      field('Port', port),
      field('VNC password', password, 'Up to 8 characters'),
      field('Title', title),
      remove,
    );
    hosts.push(entry);
    rows.append(entry.el);
  };
  add();
  return {
    el: h('div', null, rows, button('Add host', add)),
    value: () => ({
      hosts: hosts.map((e) => ({
        host: e.host.value.trim(),
        port: int(e.port),
        password: e.password.value || undefined,
        name: optional(e.title),
      })),
    }),
  };
}

const TEMPLATE_FORMS: Record<ProviderKind, () => TemplateForm> = {
  xvnc: xvncTemplate,
  qemu: qemuTemplate,
  vnc: vncTemplate,
};

/** The fields PoolCreateBody and PoolUpdateBody share, as inputs. */
function sizingFields(p?: Pool) {
  return {
    minSize: numberInput(p?.minSize ?? 0, 0, 1000),
    maxSize: numberInput(p?.maxSize ?? 10, 1, 1000),
    spares: numberInput(p?.spares ?? 0, 0, 100),
    disconnectedTimeoutSec: numberInput(p?.disconnectedTimeoutSec ?? 3600, 0, 30 * 86400),
    idleTimeoutSec: numberInput(p?.idleTimeoutSec ?? 0, 0, 30 * 86400),
    maxSessionSec: numberInput(p?.maxSessionSec ?? 0, 0, 365 * 86400),
    maxPerUser: numberInput(p?.maxPerUser ?? 1, 1, 100),
  };
}
type Sizing = ReturnType<typeof sizingFields>;

function sizingLayout(s: Sizing): HTMLElement[] {
  return [
    field('Min size', s.minSize, 'Desktops kept in the pool'),
    field('Max size', s.maxSize),
    field('Spares', s.spares, 'Started ahead of demand'),
    field('Max per user', s.maxPerUser),
    field('Disconnected timeout (s)', s.disconnectedTimeoutSec, '0 = never log off'),
    field('Idle timeout (s)', s.idleTimeoutSec, '0 = never'),
    field('Max session length (s)', s.maxSessionSec, '0 = no limit'),
  ];
}

function sizingValue(s: Sizing) {
  return {
    minSize: int(s.minSize),
    maxSize: int(s.maxSize),
    spares: int(s.spares),
    disconnectedTimeoutSec: int(s.disconnectedTimeoutSec),
    idleTimeoutSec: int(s.idleTimeoutSec),
    maxSessionSec: int(s.maxSessionSec),
    maxPerUser: int(s.maxPerUser),
  };
}

/** Counts as "3 desktops · 2 active", from whatever count fields the server sends. */
function countsText(p: AdminPool): string {
  const counts: Record<string, unknown> = { ...(p.counts ?? {}) };
  const known = new Set([
    'minSize',
    'maxSize',
    'spares',
    'disconnectedTimeoutSec',
    'idleTimeoutSec',
    'maxSessionSec',
    'maxPerUser',
  ]);
  for (const [k, v] of Object.entries(p)) if (typeof v === 'number' && !known.has(k)) counts[k] = v;
  const parts = Object.entries(counts)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${String(v)} ${k.replace(/([A-Z])/g, ' $1').toLowerCase()}`);
  return parts.join(' · ') || '—';
}

/** "outbound · 4096 MiB · 1024 tasks" for the pool list */
function limitsSummary(p: Pool): string {
  const t = p.template as { network?: string; limits?: Record<string, number> };
  if (!t.limits) return '';
  const l = t.limits;
  return [
    t.network,
    l.memoryMb ? `${l.memoryMb} MiB` : null,
    l.cpuMax ? `${l.cpuMax} CPU` : null,
    l.pids ? `${l.pids} tasks` : null,
    l.diskMb ? `${l.diskMb} MiB disk` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

export function poolsTab({ flash }: TabContext): Tab {
  // ── create ──
  const name = h('input', { required: true, maxLength: 128, autocomplete: 'off' });
  const description = h('input', { maxLength: 1024, autocomplete: 'off' });
  const provider = select(
    [
      ['xvnc', 'xvnc (Linux desktop)'],
      ['qemu', 'qemu (virtual machine)'],
      ['vnc', 'vnc (existing hosts)'],
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
    fail: (err) => flash.error(err, 'Could not create the pool'),
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

  function edit(p: AdminPool): void {
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
      p.provider === 'xvnc' || p.provider === 'qemu'
        ? limitsForm(p.provider, p.template)
        : undefined;
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
            await api.patch(`/api/admin/pools/${seg(p.id)}`, body);
            flash.ok(`Pool ${body.name ?? p.name} saved.`);
            await load();
          },
        },
      ],
    });
  }

  function remove(p: AdminPool): void {
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
      flash.ok(`Pool ${p.name} deleted.`);
      await load();
      return true;
    };
    const dialog = openDialog({
      title: `Delete pool ${p.name}`,
      body: [h('p', null, `Delete the pool ${p.name} and its desktops? This cannot be undone.`)],
      actions: [{ label: 'Delete pool', variant: 'danger', run: attempt(false) }],
    });
  }

  function showDesktops(p: AdminPool): void {
    const body = h('div', { class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading…'));
    openDialog({ title: `Desktops of ${p.name}`, body: [body], actions: [] });
    void api
      .get<AdminDesktop[]>(`/api/admin/pools/${seg(p.id)}/desktops`)
      .then((desktops) => {
        let list = desktops;
        if (list.length === 0) {
          body.replaceChildren(h('p', { class: 'muted' }, 'No desktops.'));
          return;
        }
        // the isolation object as one readable column (account and usage; the rest in its
        // tooltip), next to the desktop's name and state so it shows without scrolling
        const tips = new Map<string, string>();
        list = list.map((d) => {
          const { isolation, name, state, health, ...rest } = d as AdminDesktop & {
            isolation?: DesktopIsolation | null;
          };
          if (isolation === undefined) return d;
          const account = isolationText(isolation);
          tips.set(account, isolationDetails(isolation));
          return { name, state, health, account, ...rest };
        });
        const keys = [...new Set(list.flatMap((d) => Object.keys(d)))].filter((k) => {
          const v = list[0]?.[k];
          return v === null || typeof v !== 'object';
        });
        const t = dataTable('Desktops', keys);
        const cell = (k: string, v: unknown) => {
          const text = v === null || v === undefined ? '—' : String(v);
          return k === 'account' ? h('span', { title: tips.get(text) ?? '' }, text) : text;
        };
        t.setRows(list.map((d) => row(...keys.map((k) => cell(k, d[k])))));
        body.replaceChildren(t.el);
      })
      .catch((err: unknown) =>
        body.replaceChildren(
          h('p', { class: 'form-error' }, err instanceof Error ? err.message : String(err)),
        ),
      );
  }

  function render(pools: AdminPool[]): void {
    table.setRows(
      pools.map((p) => {
        const drain = p.draining
          ? button('Undrain', (b) => void setDraining(p, false, b))
          : button('Drain', (b) => void setDraining(p, true, b));
        const tr = row(
          h(
            'div',
            null,
            h('strong', null, p.name),
            p.description ? h('div', { class: 'muted small' }, p.description) : null,
          ),
          h(
            'div',
            null,
            providerLabel[p.provider] ?? p.provider,
            limitsSummary(p) ? h('div', { class: 'muted small' }, limitsSummary(p)) : null,
          ),
          p.assignment === 'dedicated' ? 'Dedicated' : 'Floating',
          `${p.minSize}–${p.maxSize}, ${p.spares} spare${p.spares === 1 ? '' : 's'}, ${p.maxPerUser}/user`,
          h(
            'span',
            { class: 'small' },
            `disconnected ${seconds(p.disconnectedTimeoutSec)} · idle ${seconds(p.idleTimeoutSec)} · max ${seconds(p.maxSessionSec)}`,
          ),
          h(
            'div',
            null,
            p.draining ? h('span', { class: 'tag tag-warn' }, 'Draining') : null,
            h('div', { class: 'small' }, countsText(p)),
          ),
          actions(
            button('Edit', () => edit(p)),
            drain,
            button('Desktops', () => showDesktops(p)),
            button('Delete', () => remove(p), 'danger'),
          ),
        );
        tr.dataset.poolId = p.id;
        return tr;
      }),
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
