/** What the admin console gives each of its tabs, and what a tab gives back. */
import type { Me } from '@vdi/shared';
import type { Flash } from './flash';

export interface TabContext {
  me: Me;
  flash: Flash;
}

export interface Tab {
  el: HTMLElement;
  dispose?(): void;
}
