/**
 * History-API routing: a route table of path patterns → page factories. A page owns its
 * element and cleans up (timers, sockets, listeners) in dispose().
 */

export interface Page {
  el: HTMLElement;
  title?: string;
  dispose?(): void;
}

export interface RouteContext {
  params: Record<string, string>;
  url: URL;
}

export type PageFactory = (ctx: RouteContext) => Page | Promise<Page>;

interface Route {
  pattern: RegExp;
  keys: string[];
  load: PageFactory;
}

const routes: Route[] = [];
let notFound: PageFactory = () => ({ el: document.createElement('main') });
let root: HTMLElement | null = null;
let current: Page | null = null;
let token = 0;

/** `/desktop/:sessionId` style patterns; a param matches one path segment. */
export function route(path: string, load: PageFactory): void {
  const keys: string[] = [];
  const source = path
    .split('/')
    .map((part) => {
      if (part.startsWith(':')) {
        keys.push(part.slice(1));
        return '([^/]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  routes.push({ pattern: new RegExp(`^${source}/?$`), keys, load });
}

export function fallback(load: PageFactory): void {
  notFound = load;
}

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  void render();
}

export function startRouter(mount: HTMLElement): void {
  root = mount;
  window.addEventListener('popstate', () => void render());
  document.addEventListener('click', onLinkClick);
  void render();
}

function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
    return;
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || !a.href || a.target || a.hasAttribute('download') || a.dataset.external !== undefined)
    return;
  const url = new URL(a.href);
  if (url.origin !== location.origin) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

async function render(): Promise<void> {
  if (!root) return;
  const mine = ++token;
  const url = new URL(location.href);
  let load = notFound;
  let params: Record<string, string> = {};
  for (const r of routes) {
    const m = r.pattern.exec(url.pathname);
    if (!m) continue;
    load = r.load;
    params = Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(m[i + 1] ?? '')]));
    break;
  }
  current?.dispose?.();
  current = null;
  const page = await load({ params, url });
  if (mine !== token) {
    // another navigation won while this page was loading
    page.dispose?.();
    return;
  }
  current = page;
  root.replaceChildren(page.el);
  document.title = page.title ? `${page.title} · VDI` : 'VDI';
  // move focus for screen readers unless the page focused something itself
  if (!page.el.contains(document.activeElement)) {
    const target = page.el.querySelector<HTMLElement>('[autofocus], h1');
    if (target) {
      if (!target.hasAttribute('tabindex') && target.tagName === 'H1') target.tabIndex = -1;
      target.focus({ preventScroll: true });
    }
  }
}

/** Current path + query, for `?next=` after sign-in. */
export function currentPath(): string {
  return location.pathname + location.search;
}
