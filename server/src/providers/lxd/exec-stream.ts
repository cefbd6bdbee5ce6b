import { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import type { LxdClient } from './client.js';

/**
 * A byte stream to a program run inside a container through LXD's exec API, non-interactive:
 * stdin and stdout are two websockets (stderr and control are opened too, because LXD starts
 * the program only once every websocket is attached). LXD forwards the exec to the member
 * that runs the container, so this reaches a desktop on any member of a cluster through the
 * one the gateway talks to. Used as an RFB endpoint of kind 'stream' with a byte relay
 * (`socat - UNIX-CONNECT:<rfb socket>`) as the program.
 *
 * Emits 'connect' once the program runs (all websockets open), then works like a socket:
 * writes go to its stdin, its stdout arrives as 'data'; backpressure both ways.
 */

export interface ExecStreamOptions {
  instance: string;
  command: string[];
  /** run as this uid/gid inside the container */
  user?: number;
  group?: number;
  environment?: Record<string, string>;
  /** largest websocket message accepted, bytes (decision 13) @default 4 MiB */
  maxMessageBytes?: number;
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

interface ExecFds {
  '0': string;
  '1': string;
  '2': string;
  control: string;
}

export class ExecStream extends Duplex {
  private stdin: WebSocket | undefined;
  private stdout: WebSocket | undefined;
  private others: WebSocket[] = [];
  private readPaused = false;
  private ended = false;

  constructor(
    private readonly client: LxdClient,
    private readonly opts: ExecStreamOptions,
  ) {
    super({ allowHalfOpen: false });
    void this.open().catch((err: unknown) =>
      this.destroy(err instanceof Error ? err : new Error(String(err))),
    );
  }

  private async open(): Promise<void> {
    const { instance, command, user, group, environment } = this.opts;
    const { path, op } = await this.client.start(
      'POST',
      `/1.0/instances/${encodeURIComponent(instance)}/exec`,
      {
        command,
        environment: environment ?? {},
        interactive: false,
        'wait-for-websocket': true,
        'record-output': false,
        ...(user !== undefined ? { user } : {}),
        ...(group !== undefined ? { group } : {}),
      },
    );
    // even when destroyed meanwhile: LXD keeps an exec waiting for its websockets forever, so
    // they are attached (and closed at once below) to let the operation end
    const fds = (op.metadata as { fds?: ExecFds } | null)?.fds;
    if (fds === undefined) throw new Error(`exec in ${instance}: LXD gave no websockets`);
    const maxPayload = this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const sockets = [fds['0'], fds['1'], fds['2'], fds.control].map((secret) =>
      this.client.websocket(path, secret, maxPayload),
    );
    const open = (ws: WebSocket): WebSocket => {
      ws.on('error', (err) => this.destroy(err));
      // LXD's reason when it answers without upgrading
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          if (body.length < 2048) body += c.toString('utf8');
        });
        res.on('end', () =>
          this.destroy(
            new Error(
              `LXD answered ${res.statusCode ?? '?'} to a websocket: ${body.slice(0, 300)}`,
            ),
          ),
        );
      });
      return ws;
    };
    if (this.destroyed) {
      for (const ws of sockets) {
        ws.on('error', () => undefined);
        ws.on('open', () => ws.close());
      }
      return;
    }
    const [stdin, stdout, stderr, control] = sockets.map(open) as [
      WebSocket,
      WebSocket,
      WebSocket,
      WebSocket,
    ];
    this.stdin = stdin;
    this.stdout = stdout;
    this.others = [stderr, control];
    stdout.on('message', (data: RawData) => this.onStdout(data));
    stdout.on('close', () => {
      if (!this.ended) {
        this.ended = true;
        this.push(null);
      }
    });
    // stderr is drained and dropped; an LXD control message is not ours to act on
    stderr.on('message', () => undefined);
    control.on('message', () => undefined);
    await Promise.all(
      [stdin, stdout, stderr, control].map(
        (ws) =>
          new Promise<void>((resolve, reject) => {
            ws.once('open', () => resolve());
            ws.once('error', reject);
          }),
      ),
    );
    if (!this.destroyed) this.emit('connect');
  }

  private onStdout(data: RawData): void {
    const chunk = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data);
    // LXD marks the end of a stream with an empty message
    if (chunk.length === 0) return;
    if (!this.push(chunk) && !this.readPaused) {
      this.readPaused = true;
      this.stdout?.pause();
    }
  }

  override _read(): void {
    if (this.readPaused) {
      this.readPaused = false;
      this.stdout?.resume();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const ws = this.stdin;
    if (ws === undefined || ws.readyState !== ws.OPEN) {
      cb(new Error('exec stream is not open'));
      return;
    }
    ws.send(chunk, { binary: true }, (err) => cb(err ?? null));
  }

  override _final(cb: (err?: Error | null) => void): void {
    // closing stdin is the program's end of input
    this.stdin?.close();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    for (const ws of [this.stdin, this.stdout, ...this.others]) ws?.terminate();
    cb(err);
  }
}
