/** What most admin tabs are made of: a form that creates something, above the list of them. */
import { h } from '../dom';
import { busy } from './table';

/**
 * A card with a form: heading `title`, the fields, and the submit button `submit`. On submit
 * `run` goes with the button disabled; what it throws goes to `fail`.
 */
export function createForm(opts: {
  title: string;
  fields: Node[];
  submit: string;
  run: () => Promise<void>;
  fail: (err: unknown) => void;
}): HTMLFormElement {
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, opts.submit);
  const form = h(
    'form',
    { class: 'card form-grid' },
    h('h2', { class: 'span-all' }, opts.title),
    ...opts.fields,
    h('div', { class: 'form-actions span-all' }, submit),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void busy(submit, opts.run, opts.fail);
  });
  return form;
}

/** The tab: `form` above a card with the heading `title` and the list (a table). */
export function formAndList(form: HTMLFormElement, title: string, list: HTMLElement): HTMLElement {
  return h(
    'div',
    { class: 'stack' },
    form,
    h('div', { class: 'card' }, h('h2', null, title), list),
  );
}
