/**
 * A small element builder. Text always goes in through `textContent` / text nodes: server
 * strings never reach innerHTML (the props type leaves it out on purpose).
 */

type Child = Node | string | number | null | undefined | false;

type ElementProps<K extends keyof HTMLElementTagNameMap> = Omit<
  Partial<HTMLElementTagNameMap[K]>,
  'style' | 'dataset' | 'innerHTML' | 'outerHTML' | 'className' | 'children'
> & {
  class?: string;
  /** attributes set with setAttribute (aria-*, role, for, …); false/undefined skips one */
  attrs?: Record<string, string | number | boolean | undefined>;
  dataset?: Record<string, string>;
  style?: Partial<Record<'width' | 'height' | 'cursor' | 'display', string>>;
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: ElementProps<K> | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    const { class: cls, attrs, dataset, style, ...rest } = props;
    if (cls) el.className = cls;
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === undefined || value === false) continue;
        el.setAttribute(name, value === true ? '' : String(value));
      }
    }
    if (dataset) Object.assign(el.dataset, dataset);
    if (style) Object.assign(el.style, style);
    Object.assign(el, rest);
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

let nextId = 0;
/** A document-unique id for label/control pairs. */
export function uid(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * A `<label for>` + control pair wrapped in a div. The control gets an id if it has none,
 * so `getByLabel(text)` finds it.
 */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  if (!control.id) control.id = uid('f');
  const wrap = h('div', { class: 'field' }, h('label', { htmlFor: control.id }, label), control);
  if (hint) {
    const hintEl = h('small', { class: 'hint', id: uid('hint') }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
    wrap.append(hintEl);
  }
  return wrap;
}

export function select(
  options: ReadonlyArray<readonly [value: string, label: string]>,
  value?: string,
): HTMLSelectElement {
  const el = h('select', null, ...options.map(([v, label]) => h('option', { value: v }, label)));
  if (value !== undefined) el.value = value;
  return el;
}

/** A paragraph that shows an error (role=alert) or is hidden when empty. */
export function errorLine(): { el: HTMLParagraphElement; show(message: string | null): void } {
  const el = h('p', { class: 'form-error', attrs: { role: 'alert' }, hidden: true });
  return {
    el,
    show(message) {
      el.textContent = message ?? '';
      el.hidden = !message;
    },
  };
}
