/** The header shared by the desktop list and the admin console. */
import type { Me } from '@vdi/shared';
import { h } from './dom';
import { api } from './http';
import { navigate } from './router';

export async function signOut(): Promise<void> {
  try {
    await api.post('/api/auth/logout', undefined, { redirectOn401: false });
  } catch {
    // signed out already, or the server is away: the sign-in page is the right place anyway
  }
  navigate('/login', { replace: true });
}

export function appHeader(me: Me | null, active: 'desktops' | 'admin'): HTMLElement {
  const link = (href: string, label: string, key: typeof active) =>
    h(
      'a',
      { href, class: 'nav-link', attrs: { 'aria-current': key === active ? 'page' : undefined } },
      label,
    );
  const signOutLink = h('a', { href: '/login', class: 'nav-link' }, 'Sign out');
  signOutLink.addEventListener('click', (e) => {
    e.preventDefault();
    void signOut();
  });
  return h(
    'header',
    { class: 'app-header' },
    h(
      'a',
      { href: '/', class: 'brand' },
      h('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }),
      'VDI',
    ),
    h(
      'nav',
      { class: 'app-nav', attrs: { 'aria-label': 'Main' } },
      link('/', 'My desktops', 'desktops'),
      me?.role === 'admin' ? link('/admin', 'Admin', 'admin') : null,
    ),
    h(
      'div',
      { class: 'app-user' },
      me ? h('span', { class: 'app-username', title: 'Signed in as' }, me.username) : null,
      signOutLink,
    ),
  );
}
