import type { LoginBody, Me } from '@vdi/shared';
import { errorLine, field, h } from '../dom';
import { ApiError, api } from '../http';
import { navigate, type Page, type RouteContext } from '../router';

/** Only same-origin paths: `?next=//evil.example` must not become an open redirect. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (next === '/login' || next.startsWith('/login?')) return '/';
  return next;
}

export function loginPage({ url }: RouteContext): Page {
  const username = h('input', {
    name: 'username',
    autocomplete: 'username',
    required: true,
    autofocus: true,
    spellcheck: false,
    autocapitalize: 'none',
  });
  const password = h('input', {
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const error = errorLine();
  const form = h(
    'form',
    { class: 'card auth-card', noValidate: false },
    h(
      'div',
      { class: 'auth-brand' },
      h('span', { class: 'brand-mark', attrs: { 'aria-hidden': 'true' } }),
      'VDI',
    ),
    h('h1', null, 'Sign in to your desktops'),
    field('Username', username),
    field('Password', password),
    error.el,
    submit,
  );
  if (url.searchParams.get('expired') === '1')
    error.show('Your sign-in has expired. Please sign in again.');

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.show(null);
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const body: LoginBody = { username: username.value.trim(), password: password.value };
      await api.post<{ user: Me }>('/api/auth/login', body, { redirectOn401: false });
      navigate(safeNext(url.searchParams.get('next')), { replace: true });
    } catch (err) {
      password.value = '';
      password.focus();
      if (err instanceof ApiError && err.status === 401) {
        error.show(err.message || 'Wrong username or password.');
      } else if (err instanceof ApiError && err.status === 429) {
        error.show(err.message || 'Too many attempts. Wait a minute and try again.');
      } else {
        error.show(err instanceof Error ? err.message : String(err));
      }
    } finally {
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  return { el: h('main', { class: 'auth' }, form), title: 'Sign in' };
}
