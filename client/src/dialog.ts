/**
 * In-page modal dialogs built on <dialog>. Each one is created when opened and removed when
 * closed, so its labelled fields never shadow the page's (getByLabel stays unambiguous).
 */
import { errorLine, h } from './dom';
import { errorMessage } from './http';

export interface DialogAction {
  label: string;
  variant?: 'primary' | 'danger';
  /** resolve true (or nothing) to close, false to stay open; a throw shows its message */
  run: () => Promise<boolean | void> | boolean | void;
}

export interface OpenDialog {
  el: HTMLDialogElement;
  close(): void;
  setError(message: string | null): void;
  /** replace the action buttons (e.g. turn "Delete" into "Force delete") */
  setActions(actions: DialogAction[]): void;
  closed: Promise<void>;
}

export function openDialog(opts: {
  title: string;
  body: Node[];
  actions: DialogAction[];
}): OpenDialog {
  const error = errorLine();
  const buttons = h('div', { class: 'dialog-actions' });
  const form = h(
    'form',
    { method: 'dialog', class: 'dialog-form' },
    h('h2', { class: 'dialog-title' }, opts.title),
    ...opts.body,
    error.el,
    buttons,
  );
  const el = h('dialog', { class: 'dialog' }, form);
  el.setAttribute('aria-label', opts.title);
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let primary: DialogAction | undefined;

  const close = (): void => {
    if (el.open) el.close();
  };
  el.addEventListener('close', () => {
    el.remove();
    resolveClosed();
  });

  const run = async (action: DialogAction, button: HTMLButtonElement | null): Promise<void> => {
    error.show(null);
    if (button) button.disabled = true;
    try {
      const keepOpen = (await action.run()) === false;
      if (!keepOpen) close();
    } catch (err) {
      error.show(errorMessage(err));
    } finally {
      if (button) button.disabled = false;
    }
  };

  const setActions = (actions: DialogAction[]): void => {
    primary = actions.find((a) => a.variant !== undefined) ?? actions[0];
    buttons.replaceChildren(
      h('button', { type: 'button', class: 'btn', onclick: close }, 'Cancel'),
      ...actions.map((action) => {
        const b = h(
          'button',
          {
            type: action === primary ? 'submit' : 'button',
            class: `btn ${action.variant ? `btn-${action.variant}` : ''}`,
          },
          action.label,
        );
        if (action !== primary) b.addEventListener('click', () => void run(action, b));
        return b;
      }),
    );
  };
  setActions(opts.actions);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!form.reportValidity() || !primary) return;
    const submitter = buttons.querySelector<HTMLButtonElement>('button[type=submit]');
    void run(primary, submitter);
  });

  document.body.append(el);
  el.showModal();
  const first = form.querySelector<HTMLElement>('input, select, textarea');
  (first ?? (buttons.lastElementChild as HTMLElement | null))?.focus();
  return { el, close, setError: (m) => error.show(m), setActions, closed };
}

/** Resolves true when the user confirms. */
export function confirmDialog(
  title: string,
  message: string,
  confirmLabel: string,
): Promise<boolean> {
  return new Promise((resolve) => {
    let ok = false;
    const dialog = openDialog({
      title,
      body: [h('p', null, message)],
      actions: [{ label: confirmLabel, variant: 'danger', run: () => void (ok = true) }],
    });
    void dialog.closed.then(() => resolve(ok));
  });
}
