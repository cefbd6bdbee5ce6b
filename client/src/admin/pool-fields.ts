/**
 * The inputs of a pool: its sizing and timeouts (the fields PoolCreateBody and PoolUpdateBody
 * share, used by the create form and the edit dialog) and the template part of the create
 * form, one per provider.
 */
import type { Pool, ProviderKind } from '@vdi/shared';
import { field, h } from '../dom';
import { limitsForm } from './isolation';
import { button } from './table';

// defaultValue (the attribute), not value: form.reset() returns to it after a create
const numberInput = (value: number, min: number, max: number): HTMLInputElement =>
  h('input', {
    type: 'number',
    defaultValue: String(value),
    min: String(min),
    max: String(max),
    step: '1',
    required: true,
  });

const int = (input: HTMLInputElement): number => Number.parseInt(input.value, 10);
const optional = (input: HTMLInputElement): string | undefined => input.value.trim() || undefined;

/** The template part of the create form, one per provider. */
export interface TemplateForm {
  el: HTMLElement;
  value(): Record<string, unknown>;
}

function xvncTemplate(): TemplateForm {
  const width = numberInput(1280, 320, 8192);
  const height = numberInput(800, 200, 8192);
  // Empty = the server's default session (Openbox starting a terminal once it manages
  // windows, so the terminal has the keyboard focus). A command of our own here would drift
  // from it: "openbox & exec xterm" races Openbox and leaves the terminal unfocused.
  const command = h('input', {
    maxLength: 4096,
    spellcheck: false,
    placeholder: 'Server default: Openbox with a terminal',
  });
  const limits = limitsForm('xvnc');
  const appName = h('input', { maxLength: 64, placeholder: 'e.g. Calculator' });
  const appCommand = h('input', {
    maxLength: 4096,
    spellcheck: false,
    placeholder: 'e.g. xcalc',
  });
  const maxUpload = numberInput(1024, 0, 1_048_576);
  return {
    el: h(
      'div',
      { class: 'form-grid' },
      field('Width', width),
      field('Height', height),
      field(
        'Session command',
        command,
        'Shell command run in the desktop: window manager and apps. Empty for the default.',
      ),
      field(
        'Published application',
        appName,
        'Publish one application instead of a desktop: the name users see. Empty for a desktop.',
      ),
      field(
        'Application command',
        appCommand,
        'Shell command of the published application; the session ends when it exits.',
      ),
      field('Largest upload (MiB)', maxUpload, 'Files users may upload into ~/Uploads; 0 = off'),
      ...limits.el,
    ),
    value: () => {
      const name = optional(appName);
      const cmd = optional(appCommand);
      return {
        width: int(width),
        height: int(height),
        sessionCommand: optional(command),
        maxUploadMb: int(maxUpload),
        // half an application (a name without a command) goes to the server, which says why
        ...(name || cmd ? { app: { name: name ?? '', command: cmd ?? '' } } : {}),
        ...limits.value(),
      };
    },
  };
}

function qemuTemplate(): TemplateForm {
  const image = h('input', {
    required: true,
    maxLength: 4096,
    spellcheck: false,
    placeholder: '/var/lib/vdi/images/desktop.qcow2',
  });
  const kernel = h('input', { maxLength: 4096, spellcheck: false });
  const initrd = h('input', { maxLength: 4096, spellcheck: false });
  const append = h('input', {
    maxLength: 4096,
    spellcheck: false,
    placeholder: 'console=ttyS0 root=/dev/vda',
  });
  const memory = numberInput(256, 64, 65536);
  const vcpus = numberInput(1, 1, 64);
  const limits = limitsForm('qemu');
  return {
    el: h(
      'div',
      { class: 'form-grid' },
      field('Image path', image, 'Golden qcow2 image on the server; desktops are linked clones'),
      field('Kernel', kernel, 'Optional, for images without a boot loader'),
      field('Initrd', initrd),
      field('Kernel arguments', append),
      field('Memory (MB)', memory),
      field('vCPUs', vcpus),
      ...limits.el,
    ),
    value: () => ({
      image: image.value.trim(),
      kernel: optional(kernel),
      initrd: optional(initrd),
      append: optional(append),
      memoryMb: int(memory),
      vcpus: int(vcpus),
      ...limits.value(),
    }),
  };
}

function vncTemplate(): TemplateForm {
  const rows = h('div', { class: 'host-rows' });
  const hosts: Array<{
    host: HTMLInputElement;
    port: HTMLInputElement;
    password: HTMLInputElement;
    title: HTMLInputElement;
    el: HTMLElement;
  }> = [];
  const add = (): void => {
    const host = h('input', {
      required: true,
      maxLength: 255,
      spellcheck: false,
      placeholder: '10.0.0.5',
    });
    const port = numberInput(5900, 1, 65535);
    const password = h('input', { type: 'password', maxLength: 8, autocomplete: 'off' });
    const title = h('input', { maxLength: 128 });
    const entry = { host, port, password, title, el: h('div', { class: 'host-row' }) };
    const remove = button('Remove host', () => {
      if (hosts.length === 1) return;
      hosts.splice(hosts.indexOf(entry), 1);
      entry.el.remove();
    });
    entry.el.append(
      field('Host', host),
      field('Port', port),
      field('VNC password', password, 'Up to 8 characters'),
      field('Title', title),
      remove,
    );
    hosts.push(entry);
    rows.append(entry.el);
  };
  add();
  return {
    el: h('div', null, rows, button('Add host', add)),
    value: () => ({
      hosts: hosts.map((e) => ({
        host: e.host.value.trim(),
        port: int(e.port),
        password: e.password.value || undefined,
        name: optional(e.title),
      })),
    }),
  };
}

/** LXD system containers from the desktop image, placed on the cluster's members. */
function lxdTemplate(): TemplateForm {
  const image = h('input', { defaultValue: 'vdi-desktop', maxLength: 64, spellcheck: false });
  const width = numberInput(1280, 320, 8192);
  const height = numberInput(800, 200, 8192);
  const placement = h(
    'select',
    null,
    h('option', { value: 'breadth-first' }, 'Breadth-first (least loaded host)'),
    h('option', { value: 'depth-first' }, 'Depth-first (fill a host first)'),
  );
  const network = h('input', {
    maxLength: 64,
    spellcheck: false,
    placeholder: 'None: no network device',
  });
  const memory = numberInput(2048, 0, 4 * 1024 * 1024);
  const cpu = h('input', {
    type: 'number',
    defaultValue: '0',
    min: '0',
    max: '1024',
    step: '0.25',
  });
  const pids = numberInput(1024, 0, 4_194_304);
  return {
    el: h(
      'div',
      { class: 'form-grid' },
      field('Image', image, 'Alias of the desktop image on the LXD server (npm run setup:lxd)'),
      field('Width', width),
      field('Height', height),
      field('Placement', placement),
      field('Network', network, 'An LXD managed network to attach; empty = none'),
      field('Memory (MiB)', memory, '0 = no limit'),
      field('CPUs', cpu, '0 = no cap'),
      field('Processes', pids, '0 = no limit'),
    ),
    value: () => ({
      image: image.value.trim() || 'vdi-desktop',
      width: int(width),
      height: int(height),
      placement: placement.value,
      network: optional(network),
      limits: { memoryMb: int(memory), cpuMax: Number(cpu.value) || 0, pids: int(pids) },
    }),
  };
}

export const TEMPLATE_FORMS: Record<ProviderKind, () => TemplateForm> = {
  xvnc: xvncTemplate,
  qemu: qemuTemplate,
  vnc: vncTemplate,
  lxd: lxdTemplate,
};

/** The fields PoolCreateBody and PoolUpdateBody share, as inputs. */
export function sizingFields(p?: Pool) {
  return {
    minSize: numberInput(p?.minSize ?? 0, 0, 1000),
    maxSize: numberInput(p?.maxSize ?? 10, 1, 1000),
    spares: numberInput(p?.spares ?? 0, 0, 100),
    disconnectedTimeoutSec: numberInput(p?.disconnectedTimeoutSec ?? 3600, 0, 30 * 86400),
    idleTimeoutSec: numberInput(p?.idleTimeoutSec ?? 0, 0, 30 * 86400),
    maxSessionSec: numberInput(p?.maxSessionSec ?? 0, 0, 365 * 86400),
    maxPerUser: numberInput(p?.maxPerUser ?? 1, 1, 100),
  };
}
export type Sizing = ReturnType<typeof sizingFields>;

export function sizingLayout(s: Sizing): HTMLElement[] {
  return [
    field('Min size', s.minSize, 'Desktops kept in the pool'),
    field('Max size', s.maxSize),
    field('Spares', s.spares, 'Started ahead of demand'),
    field('Max per user', s.maxPerUser),
    field('Disconnected timeout (s)', s.disconnectedTimeoutSec, '0 = never log off'),
    field('Idle timeout (s)', s.idleTimeoutSec, '0 = never'),
    field('Max session length (s)', s.maxSessionSec, '0 = no limit'),
  ];
}

export function sizingValue(s: Sizing) {
  return {
    minSize: int(s.minSize),
    maxSize: int(s.maxSize),
    spares: int(s.spares),
    disconnectedTimeoutSec: int(s.disconnectedTimeoutSec),
    idleTimeoutSec: int(s.idleTimeoutSec),
    maxSessionSec: int(s.maxSessionSec),
    maxPerUser: int(s.maxPerUser),
  };
}
