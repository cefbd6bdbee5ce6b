/**
 * What an administrator can do to a live session from its row: shadow, message, disconnect,
 * log off, reset, and for VMs snapshot, restore, power and move (live migration to another
 * host, the user's viewer staying attached). Confirmations are in-page dialogs.
 */
import type { AdminSession, HostList, MoveResult } from '@vdi/shared';
import { confirmDialog, openDialog } from '../dialog';
import { field, h, select } from '../dom';
import { api, seg } from '../http';
import type { Flash } from './flash';
import { busy, button } from './table';

export interface SessionActionContext {
  flash: Flash;
  /** reloads the sessions table after a change */
  refresh(): Promise<void>;
}

/** A button action that posts to `path`, says `done` and reloads the table. */
const post =
  (ctx: SessionActionContext, path: string, done: string) => (b: HTMLButtonElement | null) =>
    busy(
      b,
      async () => {
        await api.post(path);
        ctx.flash.ok(done);
        await ctx.refresh();
      },
      (err) => ctx.flash.error(err),
    );

function message(s: AdminSession, ctx: SessionActionContext): void {
  const text = h('textarea', { rows: 3, required: true, maxLength: 2000 });
  openDialog({
    title: `Message to ${s.username}`,
    body: [field('Message', text, 'Shown as a banner in the user’s viewer')],
    actions: [
      {
        label: 'Send message',
        variant: 'primary',
        run: async () => {
          await api.post(`/api/admin/sessions/${seg(s.id)}/message`, {
            text: text.value.trim(),
          });
          ctx.flash.ok(`Message sent to ${s.username}.`);
        },
      },
    ],
  });
}

function resetDesktop(s: AdminSession, ctx: SessionActionContext): void {
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
          post(
            ctx,
            `/api/admin/sessions/${seg(s.id)}/reset`,
            `Desktop ${s.desktopName} reset.`,
          )(null),
      },
    ],
  });
}

function snapshot(s: AdminSession, ctx: SessionActionContext): void {
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
          ctx.flash.ok(`Snapshot ${name.value.trim()} taken.`);
        },
      },
    ],
  });
}

function restore(s: AdminSession, ctx: SessionActionContext): void {
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
          ctx.flash.ok(`Restored ${list.value}.`);
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

function power(s: AdminSession, ctx: SessionActionContext): void {
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
          ctx.flash.ok(`Power ${action.value} sent to ${s.desktopName}.`);
        },
      },
    ],
  });
}

function move(s: AdminSession, ctx: SessionActionContext): void {
  const here = s.facts?.host ?? '';
  const hosts = select([]);
  const dialog = openDialog({
    title: `Move ${s.desktopName}`,
    body: [
      h(
        'p',
        null,
        `Live-migrate the running VM${here ? ` from ${here}` : ''} to another host. ${s.username} keeps working: at most a short freeze, no reconnect.`,
      ),
      field('Destination host', hosts),
    ],
    actions: [
      {
        label: 'Move now',
        variant: 'primary',
        run: async () => {
          if (!hosts.value) throw new Error('There is no other host to move to.');
          const r = await api.post<MoveResult>(`/api/admin/desktops/${seg(s.desktopId)}/move`, {
            host: hosts.value,
          });
          ctx.flash.ok(
            `${s.desktopName} moved to ${r.to} in ${(r.totalMs / 1000).toFixed(1)} s (paused ${r.downtimeMs} ms).`,
          );
          await ctx.refresh();
        },
      },
    ],
  });
  void api
    .get<HostList>(`/api/admin/hosts/move-targets?desktop=${encodeURIComponent(s.desktopId)}`)
    .then((list) => {
      const others = list.hosts.filter((x) => x !== (list.current ?? here));
      hosts.replaceChildren(...others.map((x) => h('option', { value: x }, x)));
      if (others.length === 0) dialog.setError('There is no other host to move to.');
    })
    .catch((err: unknown) => dialog.setError(err instanceof Error ? err.message : String(err)));
}

/**
 * The buttons of one session's row; VMs get snapshot, restore, power and move besides, and
 * LXD desktops move (a VM one between the cluster's members; the server says why an X11
 * container cannot).
 */
export function sessionActions(
  s: AdminSession,
  isQemu: boolean,
  ctx: SessionActionContext,
  isLxd = false,
): HTMLElement[] {
  const id = seg(s.id);
  const list = [
    button('Shadow', () => {
      window.open(`/desktop/${id}?shadow=1`, '_blank', 'noopener');
    }),
    button('Message', () => message(s, ctx)),
    button(
      'Disconnect',
      (b) =>
        void post(
          ctx,
          `/api/admin/sessions/${id}/disconnect`,
          `${s.username} disconnected; the desktop keeps running.`,
        )(b),
    ),
    button(
      'Log off',
      (b) =>
        void confirmDialog(
          `Log off ${s.username}?`,
          `Log off ${s.username} from ${s.desktopName}? Their applications are closed; unsaved work is lost.`,
          'Log off',
        ).then(async (sure) => {
          if (sure)
            await post(ctx, `/api/admin/sessions/${id}/logoff`, `${s.username} logged off.`)(b);
        }),
      'danger',
    ),
    button('Reset desktop', () => resetDesktop(s, ctx), 'danger'),
  ];
  if (isQemu) {
    list.push(
      button('Snapshot', () => snapshot(s, ctx)),
      button('Restore', () => restore(s, ctx)),
      button('Power', () => power(s, ctx)),
      button('Move', () => move(s, ctx)),
    );
  } else if (isLxd) {
    list.push(button('Move', () => move(s, ctx)));
  }
  return list;
}
