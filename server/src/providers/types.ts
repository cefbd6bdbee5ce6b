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
  /**
   * the host (LXD cluster member) the broker placed this desktop on; providers that run
   * desktops on one machine ignore it
   */
  host?: string;
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

/** A machine a provider can place desktops on (an LXD cluster member). */
export interface ProviderHost {
  name: string;
  /** where it is reached, for the admin console */
  address: string;
  online: boolean;
  /** the provider's own words on its state ("Online", "Evacuated", an error) */
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
  /**
   * The server stopped during a move of this desktop, which runs at its source: cancel what
   * the VM still does of the move by itself and let it run. Resolves with what was done.
   */
  abandonMove?(handle: DesktopHandle): Promise<string[]>;
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
  /**
   * The hosts this provider places desktops on, for the broker's placement; undefined (or
   * not implemented) when it runs desktops on this machine only.
   */
  hosts?(): Promise<ProviderHost[] | undefined>;
  /** extra facts for the admin console (e.g. "KVM" or "TCG") */
  describe?(handle: DesktopHandle): Record<string, string>;
  /**
   * Live migration: move the running desktop to `spec.destinationHost` while it runs, and
   * resolve with its new handle once the destination runs it and the source is gone. On any
   * failure it rejects with the source still running and the destination removed.
   */
  migrate?(
    handle: DesktopHandle,
    spec: MigrateSpec,
    log: Logger,
    hooks: MigrationHooks,
  ): Promise<MigrationOutcome>;
  /** the host a desktop runs on, as its handle records it; undefined: this provider's own */
  hostOf?(handle: DesktopHandle): string | undefined;
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
  /**
   * the desktop's microphone input (MIC_FORMAT PCM); throws a ProviderError when it has none.
   * Absent for desktops without one.
   */
  microphone?(): AudioSink;
}

/** Where microphone PCM goes in a desktop: written without ever blocking. */
export interface AudioSink {
  /** false when the desktop is not taking it now (the chunk is dropped) */
  write(pcm: Buffer): boolean;
  close(): void;
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

export interface MigrateSpec {
  /** the host to move to (another QEMU process on this machine under that host name) */
  destinationHost: string;
  /** the pool's template, as for create(): the destination is started like the source */
  template: Record<string, unknown>;
}

/** What the provider tells its caller during a move, so that viewers stay attached. */
export interface MigrationHooks {
  /**
   * The destination runs (waiting for the state) and its display answers at its endpoint:
   * open a second link to it now (gateway nodes elsewhere find it from the handle). Rejecting
   * fails the move.
   */
  destinationReady?(destination: MoveDestination): Promise<void>;
  /**
   * The source may stop any moment from now on: hold input (a stopped VM drops it) until
   * the move ends. Resolves once input sent so far has reached the source.
   */
  holdInput?(): Promise<void>;
  /**
   * The destination runs the desktop (the source is paused for good): take its display.
   * Called before the source is cleaned up; a rejection is logged, the move stands.
   */
  switchedOver?(): Promise<void>;
}

/** A move's destination, once it runs: its display, and its handle should the move stand. */
export interface MoveDestination {
  endpoint: RfbEndpoint;
  handle: DesktopHandle;
}

export interface MigrationOutcome {
  handle: DesktopHandle;
  /** figures for the log and the README: total, QMP downtime, RAM and disk copied */
  stats: MigrationStats;
}

export interface MigrationStats {
  /** from the call to the source's exit, ms */
  totalMs: number;
  /** QEMU's own figure (query-migrate `downtime`): the guest's pause, ms */
  downtimeMs: number;
  /** starting the destination (QEMU up, NBD export), ms */
  setupMs: number;
  /** copying the disk until the mirror is in sync, ms */
  mirrorMs: number;
  /** RAM and device state streamed (query-migrate), ms */
  migrateMs: number;
  /** of migrateMs, the destination running while it pulled the pages left (postcopy), ms; 0 without */
  postcopyMs: number;
  /** bytes of RAM sent */
  ramBytes: number;
}

export class ProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
