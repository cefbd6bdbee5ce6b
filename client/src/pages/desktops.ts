/** "My desktops": one card per entitled pool, with the user's live sessions in it. */
import type { ConnectResult, Me, MyDesktop, SessionInfo } from '@vdi/shared';
import { confirmDialog } from '../dialog';
import { clear, errorLine, h } from '../dom';
import { ApiError, api, errorMessage, seg } from '../http';
import { appHeader } from '../layout';
import { navigate, type Page } from '../router';
import { providerLabel, since } from '../format';

/** How often the list refreshes itself while visible. */
const REFRESH_INTERVAL_MS = 15_000;

const STATE_LABEL: Record<SessionInfo['state'], string> = {
  starting: 'Starting',
  active: 'Active',
  disconnected: 'Disconnected',
  ended: 'Ended',
};

/** Friendlier wording for the broker's refusals; the server's message is kept after it. */
const CONNECT_HINTS: Record<string, string> = {
  POOL_FULL: 'All desktops in this pool are in use. Try again later.',
  POOL_DRAINING: 'This pool is being retired and takes no new sessions.',
  MAX_SESSIONS: 'You already have as many sessions as this pool allows. Log off one first.',
};

export function desktopsPage(): Page {
  const list = h('div', { class: 'pool-grid', attrs: { 'aria-busy': 'true' } });
  const pageError = errorLine();
  const header = h('div', { class: 'header-slot' });
  const main = h(
    'main',
    { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'My desktops')),
    pageError.el,
    list,
  );
  const root = h('div', { class: 'app' }, header, main);
  let disposed = false;
  let lastJson = '';
  let timer = 0;

  async function load(): Promise<void> {
    try {
      const desktops = await api.get<MyDesktop[]>('/api/desktops');
      if (disposed) return;
      pageError.show(null);
      const json = JSON.stringify(desktops);
      if (json !== lastJson) {
        lastJson = json;
        render(desktops);
      }
    } catch (err) {
      if (!disposed && !(err instanceof ApiError && err.status === 401)) {
        pageError.show(`Could not load your desktops: ${errorMessage(err)}`);
      }
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  function render(desktops: MyDesktop[]): void {
    clear(list);
    if (desktops.length === 0) {
      list.append(
        h(
          'div',
          { class: 'empty card' },
          h('h2', null, 'No desktops yet'),
          h(
            'p',
            null,
            'You are not entitled to any desktop pool. Ask an administrator for access.',
          ),
        ),
      );
      return;
    }
    for (const d of desktops) list.append(card(d));
  }

  function card(d: MyDesktop): HTMLElement {
    const error = errorLine();
    const titleId = `pool-${d.poolId}`;
    const live = d.sessions.filter((s) => s.state !== 'ended');
    // with a session to go back to, the button says so
    const connect = h(
      'button',
      {
        type: 'button',
        class: 'btn btn-primary',
        title: live.length ? 'Back to your running session' : 'Start or get a desktop',
      },
      live.length ? 'Resume' : 'Connect',
    );
    connect.addEventListener('click', async () => {
      error.show(null);
      connect.disabled = true;
      connect.setAttribute('aria-busy', 'true');
      try {
        const res = await api.post<ConnectResult>(`/api/pools/${seg(d.poolId)}/connect`);
        navigate(`/desktop/${seg(res.sessionId)}`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return;
        const hint = err instanceof ApiError ? CONNECT_HINTS[err.code] : undefined;
        error.show(
          hint ? `${errorMessage(err)}. ${hint}` : `Could not connect: ${errorMessage(err)}`,
        );
      } finally {
        connect.disabled = false;
        connect.removeAttribute('aria-busy');
      }
    });

    const sessions = live.map((s) => sessionRow(s, (m) => error.show(m)));
    return h(
      'article',
      { class: 'card pool-card', attrs: { 'aria-labelledby': titleId } },
      h('h2', { id: titleId, class: 'pool-name' }, d.app ?? d.poolName),
      d.app && d.app !== d.poolName ? h('p', { class: 'pool-desc' }, d.poolName) : null,
      d.description ? h('p', { class: 'pool-desc' }, d.description) : null,
      h(
        'p',
        { class: 'tags' },
        h('span', { class: 'tag' }, providerLabel[d.provider] ?? d.provider),
        d.app
          ? h('span', { class: 'tag tag-app' }, 'Application')
          : h(
              'span',
              { class: 'tag' },
              d.assignment === 'dedicated' ? 'Dedicated desktop' : 'Floating desktop',
            ),
        d.draining ? h('span', { class: 'tag tag-warn' }, 'Draining') : null,
      ),
      sessions.length
        ? h('ul', { class: 'session-list' }, ...sessions)
        : h('p', { class: 'muted' }, 'No running session'),
      error.el,
      h('div', { class: 'card-actions' }, connect),
    );
  }

  function sessionRow(s: SessionInfo, showError: (m: string | null) => void): HTMLElement {
    const logoff = h('button', { type: 'button', class: 'btn btn-small' }, 'Log off');
    logoff.title = 'End this session and close its applications';
    logoff.addEventListener('click', async () => {
      showError(null);
      const sure = await confirmDialog(
        'Log off?',
        `Log off ${s.desktopName || 'this session'}? Its applications are closed; unsaved work is lost.`,
        'Log off',
      );
      if (!sure) return;
      logoff.disabled = true;
      try {
        await api.post(`/api/sessions/${seg(s.id)}/logoff`);
        await load();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401))
          showError(`Could not log off: ${errorMessage(err)}`);
        logoff.disabled = false;
      }
    });
    return h(
      'li',
      { class: 'session-row' },
      h('span', { class: `state state-${s.state}` }, STATE_LABEL[s.state]),
      h(
        'span',
        { class: 'session-since' },
        s.desktopName ? `${s.desktopName} · ${since(s.stateSince)}` : since(s.stateSince),
      ),
      logoff,
    );
  }

  const onVisible = (): void => {
    if (document.visibilityState === 'visible') void load();
  };
  document.addEventListener('visibilitychange', onVisible);
  timer = window.setInterval(() => {
    if (document.visibilityState === 'visible') void load();
  }, REFRESH_INTERVAL_MS);

  void api
    .get<Me>('/api/auth/me')
    .then((me) => !disposed && header.replaceChildren(appHeader(me, 'desktops')))
    .catch(() => !disposed && header.replaceChildren(appHeader(null, 'desktops')));
  void load();

  return {
    el: root,
    title: 'My desktops',
    dispose() {
      disposed = true;
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    },
  };
}
