/**
 * The API's per-field validation errors (400 INVALID, `details: [{ path, message }]`) shown
 * at the fields they are about, as the browser shows its own: a message under the field,
 * the field marked invalid, cleared as soon as it is edited.
 */
import { h } from '../dom';
import { ApiError } from '../http';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export interface FieldIssue {
  path: string;
  message: string;
}

/** The field issues an API error carries, if any. */
export function fieldIssues(err: unknown): FieldIssue[] {
  if (!(err instanceof ApiError) || !Array.isArray(err.details)) return [];
  return err.details.filter(
    (d): d is FieldIssue =>
      typeof (d as FieldIssue | null)?.path === 'string' &&
      typeof (d as FieldIssue).message === 'string',
  );
}

/** Remove the messages shown by showFieldErrors in `scope`. */
export function clearFieldErrors(scope: HTMLElement): void {
  for (const el of scope.querySelectorAll('.field-error')) el.remove();
  for (const el of scope.querySelectorAll('[aria-invalid="true"]'))
    el.removeAttribute('aria-invalid');
}

/**
 * Show each issue under its control: `controls` maps an API path (or its first segment,
 * e.g. `template` for `template.limits.memoryMb`) to the control. Returns the error line for
 * the form: what the fields say, and the issues no field shows.
 */
export function showFieldErrors(
  scope: HTMLElement,
  controls: Record<string, Control | undefined>,
  err: unknown,
): string | null {
  clearFieldErrors(scope);
  const issues = fieldIssues(err);
  if (issues.length === 0) return null;
  const rest: string[] = [];
  let first: Control | undefined;
  for (const issue of issues) {
    const control = controls[issue.path] ?? controls[issue.path.split('.')[0] ?? ''];
    if (!control) {
      rest.push(issue.path ? `${issue.path}: ${issue.message}` : issue.message);
      continue;
    }
    first ??= control;
    const sub = controls[issue.path] ? '' : `${issue.path.split('.').slice(1).join('.')}: `;
    const msg = h('small', { class: 'field-error', attrs: { role: 'alert' } }, sub + issue.message);
    control.setAttribute('aria-invalid', 'true');
    control.insertAdjacentElement('afterend', msg);
    control.addEventListener(
      'input',
      () => {
        msg.remove();
        control.removeAttribute('aria-invalid');
      },
      { once: true },
    );
  }
  first?.focus();
  return rest.length ? `Not saved: ${rest.join('; ')}` : 'Not saved: see the fields marked in red.';
}
