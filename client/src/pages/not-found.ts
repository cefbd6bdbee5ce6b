import { h } from '../dom';
import type { Page } from '../router';

export function notFoundPage(): Page {
  return {
    el: h(
      'main',
      { class: 'center-page' },
      h(
        'div',
        { class: 'card' },
        h('h1', null, 'Page not found'),
        h('p', null, h('a', { href: '/' }, 'Go to my desktops')),
      ),
    ),
    title: 'Not found',
  };
}
