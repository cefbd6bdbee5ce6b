/** `/admin` and `/admin/<tab>` — the admin console (admin role only). */
import type { Me } from '@vdi/shared';
import { h } from '../dom';
import { ApiError, api, errorMessage } from '../http';
import { appHeader } from '../layout';
import type { Page, RouteContext } from '../router';
import { auditTab } from './audit-tab';
import { entitlementsTab } from './entitlements-tab';
import { groupsTab } from './groups-tab';
import { hostsTab } from './hosts-tab';
import { poolsTab } from './pools-tab';
import { sessionsTab } from './sessions-tab';
import { usersTab } from './users-tab';
import { makeFlash } from './flash';
import type { Tab } from './tab';

const TABS = [
  { key: 'users', label: 'Users', open: usersTab },
  { key: 'groups', label: 'Groups', open: groupsTab },
  { key: 'pools', label: 'Pools', open: poolsTab },
  { key: 'entitlements', label: 'Entitlements', open: entitlementsTab },
  { key: 'sessions', label: 'Sessions', open: sessionsTab },
  { key: 'hosts', label: 'Hosts', open: hostsTab },
  { key: 'audit', label: 'Audit', open: auditTab },
] as const;

export function adminPage({ params }: RouteContext): Page {
  const active = TABS.find((t) => t.key === params.tab) ?? TABS[0];
  const header = h('div', { class: 'header-slot' });
  const content = h('div', { class: 'admin-content', attrs: { 'aria-busy': 'true' } });
  const main = h('main', { class: 'page page-wide' }, content);
  const root = h('div', { class: 'app' }, header, main);
  let tab: Tab | null = null;
  let disposed = false;

  void (async () => {
    let me: Me | null = null;
    try {
      me = await api.get<Me>('/api/auth/me');
    } catch (err) {
      if (!disposed && !(err instanceof ApiError && err.status === 401)) {
        content.replaceChildren(
          h('p', { class: 'form-error', attrs: { role: 'alert' } }, errorMessage(err)),
        );
      }
    }
    if (disposed) return;
    header.replaceChildren(appHeader(me, 'admin'));
    content.removeAttribute('aria-busy');
    if (!me) return;
    if (me.role !== 'admin') {
      content.replaceChildren(
        h(
          'div',
          { class: 'card' },
          h('h1', null, 'Admin console'),
          h(
            'p',
            { attrs: { role: 'alert' } },
            'You are not allowed to use the admin console. It is for administrators only.',
          ),
          h('p', null, h('a', { href: '/' }, 'Back to my desktops')),
        ),
      );
      return;
    }
    const { el: flashEl, flash } = makeFlash();
    tab = active.open({ me, flash });
    content.replaceChildren(
      h('div', { class: 'page-head' }, h('h1', null, 'Admin console')),
      h(
        'nav',
        { class: 'tabs', attrs: { 'aria-label': 'Admin sections' } },
        ...TABS.map((t) =>
          h(
            'a',
            {
              href: `/admin/${t.key}`,
              class: 'tab',
              attrs: { 'aria-current': t === active ? 'page' : undefined },
            },
            t.label,
          ),
        ),
      ),
      flashEl,
      h('section', { class: 'tab-panel' }, h('h2', { class: 'sr-only' }, active.label), tab.el),
    );
  })();

  return {
    el: root,
    title: `Admin · ${active.label}`,
    dispose() {
      disposed = true;
      tab?.dispose?.();
    },
  };
}
