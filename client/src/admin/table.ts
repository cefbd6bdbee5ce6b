import { confirmDialog } from '../dialog';
import { h } from '../dom';

type Cell = Node | string | number | null | undefined;

/** A data table in a horizontally scrolling wrapper (narrow screens). */
export function dataTable(
  caption: string,
  headers: string[],
): {
  el: HTMLElement;
  body: HTMLTableSectionElement;
  setRows(rows: HTMLTableRowElement[]): void;
  empty: string;
} {
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'data-table' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', null, h('tr', null, ...headers.map((t) => h('th', { attrs: { scope: 'col' } }, t)))),
    body,
  );
  const result = {
    el: h('div', { class: 'table-wrap' }, table),
    body,
    empty: 'Nothing here yet.',
    setRows(rows: HTMLTableRowElement[]) {
      if (rows.length === 0) {
        body.replaceChildren(
          h(
            'tr',
            null,
            h('td', { class: 'muted empty-cell', colSpan: headers.length }, result.empty),
          ),
        );
      } else {
        body.replaceChildren(...rows);
      }
    },
  };
  return result;
}

export function row(...cells: Cell[]): HTMLTableRowElement {
  return h('tr', null, ...cells.map((c) => h('td', null, c ?? '')));
}

export function actions(...buttons: Array<HTMLElement | null | false>): HTMLElement {
  return h('div', { class: 'row-actions' }, ...buttons);
}

export function button(
  label: string,
  onClick: (b: HTMLButtonElement) => void,
  variant?: 'primary' | 'danger',
): HTMLButtonElement {
  const b = h(
    'button',
    { type: 'button', class: `btn btn-small${variant ? ` btn-${variant}` : ''}` },
    label,
  );
  b.addEventListener('click', () => onClick(b));
  return b;
}

/** Run an action from a button: disabled while it runs, errors reported through `fail`. */
export async function busy(
  b: HTMLButtonElement | null,
  run: () => Promise<unknown>,
  fail: (err: unknown) => void,
): Promise<void> {
  if (b) b.disabled = true;
  try {
    await run();
  } catch (err) {
    fail(err);
  } finally {
    if (b) b.disabled = false;
  }
}

/**
 * A danger button that asks first (dialog `title` with `question`, confirmed by `confirm`),
 * then runs `run` as busy() does.
 */
export function confirmButton(
  label: string,
  ask: { title: string; question: string; confirm: string },
  run: () => Promise<unknown>,
  fail: (err: unknown) => void,
): HTMLButtonElement {
  return button(
    label,
    (b) =>
      void confirmDialog(ask.title, ask.question, ask.confirm).then(async (ok) => {
        if (ok) await busy(b, run, fail);
      }),
    'danger',
  );
}
