/**
 * A small client for QMP over a unix socket. The server greets, the client negotiates
 * capabilities, then commands carry an `id` that QEMU echoes in the answer; asynchronous
 * events may arrive between answers. Every failure is a QmpError with a code (qmp-wire.ts).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  classifyQmpMessage,
  LineSplitter,
  QmpError,
  type Incoming,
  type QmpEvent,
  type QmpGreeting,
} from './qmp-wire.js';

export interface QmpConnectOptions {
  /** budget for connect + greeting + capability negotiation, in ms @default 5000 */
  timeoutMs?: number;
  /** default per-command timeout of execute(), in ms @default 10000 */
  commandTimeoutMs?: number;
  /** longest line accepted from QEMU, in bytes (a runaway peer cannot grow memory) @default 1048576 */
  maxLineBytes?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;
/** ids of timed-out commands remembered so that their late answers are not a protocol error */
const MAX_ABANDONED_IDS = 256;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: QmpError) => void;
  timer: NodeJS.Timeout;
}

type State = 'greeting' | 'negotiating' | 'ready' | 'closed';

export class QmpClient {
  private state: State = 'greeting';
  private readonly splitter: LineSplitter;
  private readonly pending = new Map<string, Pending>();
  private readonly abandoned = new Set<string>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private readonly closeListeners = new Set<(err: QmpError | undefined) => void>();
  private nextId = 1;
  private greetingValue: QmpGreeting | undefined;
  private onGreeting: ((g: QmpGreeting) => void) | undefined;
  private closeError: QmpError | undefined;
  private readonly commandTimeoutMs: number;

  private constructor(
    private readonly socket: Duplex,
    opts: QmpConnectOptions,
  ) {
    this.splitter = new LineSplitter(opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = this.state === 'greeting' && isConnectError(err) ? 'QMP_CONNECT' : 'QMP_CLOSED';
      this.fail(
        new QmpError(code, `QMP socket error: ${err.code ?? err.message}`, undefined, {
          cause: err,
        }),
      );
    });
    socket.on('close', () =>
      this.fail(new QmpError('QMP_CLOSED', 'QMP connection closed by QEMU')),
    );
  }

  /**
   * Connects to a QMP unix socket, waits for the greeting and enters command mode.
   * Rejects with QMP_CONNECT when nothing listens there, QMP_TIMEOUT when the peer
   * accepts but does not greet in time (e.g. a stopped QEMU).
   */
  static connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    return QmpClient.over(net.createConnection({ path }), path, opts);
  }

  /**
   * The same over any byte stream to a QMP socket (an LXD exec relay to a VM in a
   * container on another member); `label` names it in errors.
   */
  static over(stream: Duplex, label: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise<QmpClient>((resolve, reject) => {
      const client = new QmpClient(stream, opts);
      const timer = setTimeout(() => {
        client.fail(
          new QmpError('QMP_TIMEOUT', `no QMP greeting from ${label} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const unsubscribe = client.onClose((err) => {
        clearTimeout(timer);
        reject(err ?? new QmpError('QMP_CLOSED', 'QMP connection closed during negotiation'));
      });
      client.onGreeting = () => {
        client.state = 'negotiating';
        client
          .send('qmp_capabilities', undefined, timeoutMs)
          .then(() => {
            clearTimeout(timer);
            unsubscribe();
            client.state = 'ready';
            resolve(client);
          })
          .catch((err: unknown) => {
            clearTimeout(timer);
            unsubscribe();
            client.close();
            reject(err instanceof Error ? err : new Error(String(err)));
          });
      };
    });
  }

  /** the server's greeting (QEMU version and capabilities) */
  get greeting(): QmpGreeting {
    if (!this.greetingValue) throw new QmpError('QMP_PROTOCOL', 'no greeting yet');
    return this.greetingValue;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /**
   * Runs a command and resolves with its `return` value. Rejects with QMP_COMMAND (and the
   * QMP error class) when QEMU answers with an error, QMP_TIMEOUT when no answer comes in
   * time (the connection stays usable; a late answer is dropped), QMP_CLOSED or
   * QMP_PROTOCOL when the connection ends first.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.state !== 'ready') {
      return Promise.reject(
        this.closeError ?? new QmpError('QMP_CLOSED', 'QMP connection is not ready'),
      );
    }
    return this.send(command, args, opts.timeoutMs ?? this.commandTimeoutMs) as Promise<T>;
  }

  /** Subscribes to asynchronous events; returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Called once when the connection ends: without an error after close(), with one otherwise. */
  onClose(listener: (err: QmpError | undefined) => void): () => void {
    if (this.state === 'closed') {
      queueMicrotask(() => listener(this.closeError));
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Closes the connection; pending commands reject with QMP_CLOSED. Idempotent. */
  close(): void {
    this.shutdown(undefined, new QmpError('QMP_CLOSED', 'QMP connection closed by the client'));
  }

  private send(
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutMs: number,
  ): Promise<unknown> {
    const id = `vdi-${this.nextId++}`;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.abandoned.add(id);
        if (this.abandoned.size > MAX_ABANDONED_IDS) {
          const oldest = this.abandoned.values().next().value;
          if (oldest !== undefined) this.abandoned.delete(oldest);
        }
        reject(
          new QmpError(
            'QMP_TIMEOUT',
            `QMP command ${command} got no answer within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) msg.arguments = args;
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      for (const line of this.splitter.push(chunk)) {
        // an event listener may have closed the client: drop the rest
        if (this.closed) return;
        const text = line.endsWith('\r') ? line.slice(0, -1) : line;
        if (text.trim() === '') continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          throw new QmpError(
            'QMP_PROTOCOL',
            `QMP line is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
          );
        }
        this.dispatch(classifyQmpMessage(parsed));
      }
    } catch (err) {
      this.fail(
        err instanceof QmpError
          ? err
          : new QmpError('QMP_PROTOCOL', `bad QMP input: ${String(err)}`, undefined, {
              cause: err,
            }),
      );
    }
  }

  private dispatch(msg: Incoming): void {
    if (msg.kind === 'greeting') {
      if (this.state !== 'greeting')
        throw new QmpError('QMP_PROTOCOL', 'unexpected second QMP greeting');
      this.greetingValue = msg.greeting;
      this.onGreeting?.(msg.greeting);
      return;
    }
    if (this.state === 'greeting')
      throw new QmpError('QMP_PROTOCOL', `expected a QMP greeting, got ${msg.kind}`);
    if (msg.kind === 'event') {
      for (const listener of this.eventListeners) listener(msg.event);
      return;
    }
    if (typeof msg.id !== 'string')
      throw new QmpError('QMP_PROTOCOL', `QMP ${msg.kind} answer without our id`);
    const pending = this.pending.get(msg.id);
    if (!pending) {
      if (this.abandoned.delete(msg.id)) return;
      throw new QmpError('QMP_PROTOCOL', `QMP answer for unknown id ${JSON.stringify(msg.id)}`);
    }
    this.pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.kind === 'return') pending.resolve(msg.value);
    else
      pending.reject(
        new QmpError('QMP_COMMAND', `${pending.command}: ${msg.desc}`, msg.errorClass),
      );
  }

  /** the one failure path: record why, close the socket, fail what is waiting */
  private fail(err: QmpError): void {
    this.shutdown(err, err);
  }

  private shutdown(closeError: QmpError | undefined, pendingError: QmpError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = closeError;
    this.socket.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(pendingError);
    }
    this.pending.clear();
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    this.eventListeners.clear();
    for (const listener of listeners) listener(closeError);
  }
}

function isConnectError(err: NodeJS.ErrnoException): boolean {
  return (
    err.code === 'ENOENT' ||
    err.code === 'ECONNREFUSED' ||
    err.code === 'ENOTSOCK' ||
    err.code === 'EACCES'
  );
}

/** Connects, runs one command, closes: for callers that do not keep a connection. */
export async function qmpExecute<T = unknown>(
  path: string,
  command: string,
  args?: Record<string, unknown>,
  opts: QmpConnectOptions = {},
): Promise<T> {
  const client = await QmpClient.connect(path, opts);
  try {
    return await client.execute<T>(command, args);
  } finally {
    client.close();
  }
}
