import http from 'node:http';
import https from 'node:https';
import { WebSocket } from 'ws';
import { ProviderError } from '../types.js';

/**
 * A small client of LXD's REST API (https://documentation.ubuntu.com/lxd/en/latest/rest-api/):
 * JSON over the daemon's unix socket on this host, or HTTPS with a client certificate for a
 * remote member or cluster. No CLI: every call is one request whose answer is parsed here.
 */

export type LxdConnection =
  | { kind: 'unix'; socketPath: string }
  | {
      kind: 'https';
      /** e.g. https://10.0.0.5:8443 */
      url: string;
      /** PEM client certificate and key, trusted by the cluster (`lxc config trust add`) */
      cert: string;
      key: string;
      /**
       * PEM certificate of the cluster (its `cluster.crt`): pinned as the only trust anchor.
       * LXD's certificates name no address, so the host name is not checked against it.
       */
      serverCert: string;
    };

/** LXD's envelope around every answer. */
interface LxdEnvelope {
  type: 'sync' | 'async' | 'error';
  status_code?: number;
  error_code?: number;
  error?: string;
  operation?: string;
  metadata?: unknown;
}

export interface LxdOperation {
  id: string;
  status: string;
  status_code: number;
  err: string;
  metadata: Record<string, unknown> | null;
  /** the cluster member running it ('none' when not clustered) */
  location?: string;
}

/** Largest JSON answer we read (decision 13: every queue bounded in bytes). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Pause between waits on an operation that is still running, in ms. */
const WAIT_POLL_MS = 100;
/** A request with no answer after this is abandoned, in ms. */
const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/**
 * An operation's path without its query: over HTTPS LXD names operations
 * `/1.0/operations/<id>?project=default`, and `/wait` or `/websocket` go before the query.
 */
function operationPath(op: string): string {
  const q = op.indexOf('?');
  return q === -1 ? op : op.slice(0, q);
}

/** The pinned certificate is the trust anchor; LXD's names no address to check. */
function acceptPinned(): undefined {
  return undefined;
}

export class LxdApiError extends ProviderError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(status === 404 ? 'LXD_NOT_FOUND' : 'LXD_API_ERROR', message);
  }
}

export class LxdClient {
  constructor(
    readonly connection: LxdConnection,
    private readonly timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS,
  ) {}

  /** `unix:<path>` or the URL, for logs. */
  describe(): string {
    return this.connection.kind === 'unix'
      ? `unix:${this.connection.socketPath}`
      : this.connection.url;
  }

  /** A sync call: resolves with the answer's metadata. */
  async get<T>(path: string): Promise<T> {
    return (await this.call('GET', path)).metadata as T;
  }

  /**
   * Any call. For an async answer (LXD made an operation) waits for the operation to end and
   * throws if it failed; resolves with the sync metadata or the finished operation.
   */
  async run<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<T> {
    const env = await this.call(method, path, body, headers);
    if (env.type === 'async' && env.operation !== undefined) {
      return (await this.wait(operationPath(env.operation))) as T;
    }
    return env.metadata as T;
  }

  /** Starts an async call and returns its operation without waiting (exec, for its fds). */
  async start(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ path: string; op: LxdOperation }> {
    const env = await this.call(method, path, body);
    if (env.type !== 'async' || env.operation === undefined) {
      throw new LxdApiError(500, `${method} ${path}: expected an operation, got ${env.type}`);
    }
    return { path: operationPath(env.operation), op: env.metadata as LxdOperation };
  }

  /** Waits for an operation (by its path) to end; throws with LXD's reason if it failed. */
  async wait(opPath: string, timeoutSec = 600): Promise<LxdOperation> {
    const deadline = Date.now() + timeoutSec * 1000;
    for (;;) {
      const left = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
      const op = (await this.call('GET', `${opPath}/wait?timeout=${left}`))
        .metadata as LxdOperation;
      if (op.status_code >= 400 || op.status === 'Failure') {
        throw new LxdApiError(op.status_code, `operation failed: ${op.err || op.status}`);
      }
      if (op.status_code >= 200) return op;
      // a member forwarding the wait for another member's operation may answer early
      if (Date.now() >= deadline) {
        throw new LxdApiError(504, `operation still ${op.status} after ${timeoutSec} s`);
      }
      await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
    }
  }

  /**
   * Opens one of an operation's websockets (exec's stdin, stdout, stderr, control). The
   * server forwards it to the member running the operation.
   */
  websocket(opPath: string, secret: string, maxPayload: number): WebSocket {
    const path = `${opPath}/websocket?secret=${encodeURIComponent(secret)}`;
    const c = this.connection;
    if (c.kind === 'unix') {
      return new WebSocket(`ws+unix://${c.socketPath}:${path}`, {
        perMessageDeflate: false,
        maxPayload,
      });
    }
    return new WebSocket(`${c.url.replace(/^https:/, 'wss:')}${path}`, {
      perMessageDeflate: false,
      maxPayload,
      cert: c.cert,
      key: c.key,
      ca: c.serverCert,
      // ws types this as boolean, but hands it to tls.connect: undefined means "accepted"
      checkServerIdentity: acceptPinned as unknown as () => boolean,
    });
  }

  /** A plain-text file LXD serves (an instance's logs), at most MAX_RESPONSE_BYTES. */
  async text(path: string): Promise<string> {
    return (await this.raw('GET', path)).toString('utf8');
  }

  /** One HTTP request, the body as JSON or raw bytes; parses LXD's envelope. */
  async call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<LxdEnvelope> {
    const { status, bytes } = await this.exchange(method, path, body, headers);
    let env: LxdEnvelope;
    try {
      env = JSON.parse(bytes.toString('utf8')) as LxdEnvelope;
    } catch {
      throw new LxdApiError(502, `${method} ${path}: LXD answered ${status} without JSON`);
    }
    if (env.type === 'error' || status >= 400) {
      throw new LxdApiError(
        env.error_code ?? status,
        `${method} ${path}: ${env.error ?? `status ${status}`}`,
      );
    }
    return env;
  }

  /** The raw answer of a request that is not JSON (a log file); throws on an error status. */
  async raw(method: string, path: string): Promise<Buffer> {
    const { status, bytes } = await this.exchange(method, path);
    if (status >= 400) throw new LxdApiError(status, `${method} ${path}: status ${status}`);
    return bytes;
  }

  private exchange(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; bytes: Buffer }> {
    const payload =
      body === undefined
        ? undefined
        : Buffer.isBuffer(body)
          ? body
          : Buffer.from(JSON.stringify(body), 'utf8');
    const reqHeaders: Record<string, string | number> = { ...headers };
    if (payload !== undefined) {
      reqHeaders['content-length'] = payload.length;
      reqHeaders['content-type'] ??= Buffer.isBuffer(body)
        ? 'application/octet-stream'
        : 'application/json';
    }
    const c = this.connection;
    return new Promise((resolve, reject) => {
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(
              new LxdApiError(502, `${method} ${path}: answer over ${MAX_RESPONSE_BYTES} bytes`),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 500, bytes: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      };
      const req =
        c.kind === 'unix'
          ? http.request(
              { socketPath: c.socketPath, path, method, headers: reqHeaders, host: 'lxd' },
              onResponse,
            )
          : https.request(
              new URL(path, c.url),
              {
                method,
                headers: reqHeaders,
                cert: c.cert,
                key: c.key,
                ca: c.serverCert,
                checkServerIdentity: acceptPinned,
              },
              onResponse,
            );
      req.setTimeout(this.timeoutMs, () =>
        req.destroy(new LxdApiError(504, `${method} ${path}: no answer in ${this.timeoutMs} ms`)),
      );
      req.on('error', (err) =>
        reject(
          err instanceof LxdApiError
            ? err
            : new LxdApiError(503, `${method} ${path} via ${this.describe()}: ${err.message}`),
        ),
      );
      req.end(payload);
    });
  }
}
