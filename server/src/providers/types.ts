import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { AudioCodec, ProviderKind } from '@vdi/shared';
import type { RfbEndpoint } from '../rfb/endpoint.js';

/**
 * What the store keeps about a running desktop: enough to find it again after the server
 * restarts (docs/architecture.md, decision 2). JSON-serialisable; each provider defines its own
 * fields.
 */
export type DesktopHandle = Record<string, unknown>;

export interface CreateSpec {
  desktopId: string;
  poolId: string;
  /** the pool's template, already validated with the provider's schema */
  template: Record<string, unknown>;
  /** dedicated pools keep the desktop's disk across log-offs */
  persistent: boolean;
  /**
   * index of this desktop in a pool of fixed members (the `vnc` provider: which entry of
   * `template.hosts`); undefined for providers that create desktops on demand
   */
  slot?: number;
}

/** Where a provider keeps its files; given by the server from its config. */
export interface ProviderDirs {
  /** private runtime directory (0700): unix sockets, pid files */
  runDir: string;
  /** persistent data: overlays, per-desktop homes */
  dataDir: string;
}

/** What a provider reports about a desktop it was asked to re-adopt or check. */
export type DesktopHealth =
  | { state: 'running' }
  | { state: 'paused'; reason: string }
  | { state: 'unresponsive'; reason: string }
  | { state: 'dead'; reason: string };

export interface ProviderStatus {
  ok: boolean;
  detail: string;
}

export interface Provider {
  readonly kind: ProviderKind;
  /** can this provider start desktops here (binaries present, directories writable)? */
  status(): Promise<ProviderStatus>;
  /** validate a pool template; throws a zod error on bad input */
  parseTemplate(template: unknown): Record<string, unknown>;
  /**
   * Start a desktop. Resolves once its RFB endpoint accepts connections. The desktop runs
   * detached from this process (own process group) so it outlives a server restart.
   */
  create(spec: CreateSpec, log: Logger): Promise<DesktopHandle>;
  /** RFB endpoint of a running desktop */
  endpoint(handle: DesktopHandle): RfbEndpoint;
  /** is the desktop described by this handle still running (used at start-up and by polling)? */
  health(handle: DesktopHandle): Promise<DesktopHealth>;
  /**
   * Stop the desktop and remove what it owns (sockets, overlays unless kept). A floating
   * desktop is never reused: the broker destroys it at log-off and creates a fresh one for the
   * next user, so a provider needs no "reset to clean" of its own.
   */
  destroy(handle: DesktopHandle, log: Logger, opts?: { keepDisk?: boolean }): Promise<void>;
  /** power actions an admin may take, where the provider supports them */
  powerAction?(
    handle: DesktopHandle,
    action: 'reset' | 'powerdown' | 'stop' | 'cont',
  ): Promise<void>;
  snapshot?(handle: DesktopHandle, name: string): Promise<void>;
  restore?(handle: DesktopHandle, name: string): Promise<void>;
  listSnapshots?(handle: DesktopHandle): Promise<string[]>;
  /** remove a stopped desktop's kept disk (dedicated desktops when their pool is deleted) */
  purge?(desktopId: string): Promise<void>;
  /**
   * Start-up reconciliation: stop anything this provider started that no known handle
   * accounts for (e.g. the server died between starting a desktop and recording it).
   * Returns how many leftovers it removed.
   */
  sweep?(known: DesktopHandle[], log: Logger): Promise<number>;
  /** extra facts for the admin console (e.g. "KVM" or "TCG") */
  describe?(handle: DesktopHandle): Record<string, string>;
  /** file transfer with the desktop's home; absent where the provider cannot reach it (VMs) */
  files?(handle: DesktopHandle): DesktopFiles;
  /** the desktop's sound; absent where the provider has none (VMs) */
  audio?(handle: DesktopHandle): AudioSource;
  /**
   * A published application's desktop: undefined while its program runs, else why the
   * session should end (the program exited). Absent for providers without applications.
   */
  appExited?(handle: DesktopHandle): Promise<string | undefined>;
}

/** Where a desktop's sound comes from (providers/xvnc/audio.ts). */
export interface AudioSource {
  /** starts capturing; throws a ProviderError when the desktop has no sound */
  open(codec: AudioCodec): AudioCapture;
}

/** One running capture: 10 ms packets until closed, or `end` with a reason. */
export interface AudioCapture {
  on(event: 'packet', fn: (p: Buffer) => void): this;
  on(event: 'end', fn: (reason: string) => void): this;
  close(): void;
}

/** A file of a desktop's ~/Downloads. */
export interface DesktopFileEntry {
  name: string;
  size: number;
  /** ISO-8601 */
  modified: string;
}

/** Uploads to ~/Uploads and downloads from ~/Downloads of one desktop (providers/xvnc/files.ts). */
export interface DesktopFiles {
  list(): Promise<DesktopFileEntry[]>;
  download(name: string): Promise<{ size: number; body: Readable; cancel(): void }>;
  /**
   * Writes `size` bytes from `body` as `name` (or `name (1)` … when taken); nothing is left
   * when it fails. `onAbort` receives the function that cancels it (the browser went away).
   */
  upload(
    name: string,
    size: number,
    body: Readable,
    onAbort: (cancel: () => void) => void,
  ): Promise<{ name: string; bytes: number }>;
}

export class ProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
