/**
 * Hostile desktops for tests: a provider whose desktops are whatever serves one unix socket,
 * and the malicious VNC server (hostile-vnc-server.mjs) run as its own process there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Logger } from 'pino';
import { VncTemplate } from '@vdi/shared';
import type {
  DesktopHandle,
  DesktopHealth,
  Provider,
  ProviderStatus,
} from '../../src/providers/types.js';
import type { RfbEndpoint } from '../../src/rfb/endpoint.js';

const SCRIPT = path.resolve(import.meta.dirname, 'hostile-vnc-server.mjs');

/** "vnc" desktops that are whatever program serves `socketPath`. */
export class HostileProvider implements Provider {
  readonly kind = 'vnc' as const;
  constructor(private readonly socketPath: string) {}
  status(): Promise<ProviderStatus> {
    return Promise.resolve({ ok: true, detail: 'hostile test desktops' });
  }
  parseTemplate(t: unknown): Record<string, unknown> {
    return VncTemplate.parse(t);
  }
  create(): Promise<DesktopHandle> {
    return Promise.resolve({ path: this.socketPath });
  }
  endpoint(): RfbEndpoint {
    return { kind: 'unix', path: this.socketPath };
  }
  health(): Promise<DesktopHealth> {
    return Promise.resolve({ state: 'running' });
  }
  destroy(_h: DesktopHandle, _log: Logger): Promise<void> {
    return Promise.resolve();
  }
}

/** The malicious VNC server playing `scenario` on `socketPath`, once it listens. */
export async function startHostileServer(
  socketPath: string,
  scenario: string,
): Promise<HostileServer> {
  const child = spawn(process.execPath, [SCRIPT, socketPath, scenario], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`hostile VNC server exited (${code})`)));
  });
  return new HostileServer(child);
}

export class HostileServer {
  constructor(private readonly child: ChildProcess) {}

  async stop(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }
}
