/**
 * A scripted RFB server on a unix socket in a temp dir: tests accept a connection and
 * then write server bytes and read what the client sent, step by step.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RfbEndpoint } from '../../../../src/rfb/endpoint.js';
import * as wire from './server-wire.js';

export type ClientMessage =
  | { type: 'SetPixelFormat'; pixelFormat: Buffer }
  | { type: 'SetEncodings'; encodings: number[] }
  | {
      type: 'FramebufferUpdateRequest';
      incremental: boolean;
      x: number;
      y: number;
      w: number;
      h: number;
    }
  | { type: 'KeyEvent'; down: boolean; keysym: number }
  | { type: 'PointerEvent'; buttonMask: number; x: number; y: number }
  | { type: 'ClientCutText'; text: Buffer }
  | { type: 'EnableContinuousUpdates'; enable: boolean; x: number; y: number; w: number; h: number }
  | { type: 'ClientFence'; flags: number; payload: Buffer }
  | { type: 'SetDesktopSize'; width: number; height: number; screens: Buffer };

export class FakeConnection {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        this.waiter?.();
        resolve();
      });
    });
    socket.on('error', () => {
      // the client may reset the connection when it fails; the test checks the client side
    });
  }

  write(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  /** bytes received and not yet read */
  get pending(): number {
    return this.buffered.length;
  }

  async read(n: number, timeoutMs = 2000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n) {
      if (this.ended)
        throw new Error(
          `connection closed while waiting for ${n} bytes (have ${this.buffered.length})`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${n} bytes (have ${this.buffered.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  async readMessage(timeoutMs = 2000): Promise<ClientMessage> {
    const type = (await this.read(1, timeoutMs))[0];
    switch (type) {
      case 0:
        return { type: 'SetPixelFormat', pixelFormat: (await this.read(19)).subarray(3) };
      case 2: {
        const head = await this.read(3);
        const n = head.readUInt16BE(1);
        const body = await this.read(4 * n);
        return {
          type: 'SetEncodings',
          encodings: Array.from({ length: n }, (_, i) => body.readInt32BE(4 * i)),
        };
      }
      case 3: {
        const b = await this.read(9);
        return {
          type: 'FramebufferUpdateRequest',
          incremental: b[0] === 1,
          x: b.readUInt16BE(1),
          y: b.readUInt16BE(3),
          w: b.readUInt16BE(5),
          h: b.readUInt16BE(7),
        };
      }
      case 4: {
        const b = await this.read(7);
        return { type: 'KeyEvent', down: b[0] === 1, keysym: b.readUInt32BE(3) };
      }
      case 5: {
        const b = await this.read(5);
        return {
          type: 'PointerEvent',
          buttonMask: b[0] as number,
          x: b.readUInt16BE(1),
          y: b.readUInt16BE(3),
        };
      }
      case 6: {
        const b = await this.read(7);
        return { type: 'ClientCutText', text: Buffer.from(await this.read(b.readUInt32BE(3))) };
      }
      case 150: {
        const b = await this.read(9);
        return {
          type: 'EnableContinuousUpdates',
          enable: b[0] === 1,
          x: b.readUInt16BE(1),
          y: b.readUInt16BE(3),
          w: b.readUInt16BE(5),
          h: b.readUInt16BE(7),
        };
      }
      case 248: {
        const b = await this.read(8);
        return {
          type: 'ClientFence',
          flags: b.readUInt32BE(3),
          payload: Buffer.from(await this.read(b[7] as number)),
        };
      }
      case 251: {
        const b = await this.read(7);
        const n = b[5] as number;
        return {
          type: 'SetDesktopSize',
          width: b.readUInt16BE(1),
          height: b.readUInt16BE(3),
          screens: Buffer.from(await this.read(16 * n)),
        };
      }
      default:
        throw new Error(`fake server: unknown client message type ${type}`);
    }
  }

  /** Read messages until one of `type` arrives; returns it and what came before. */
  async readUntil<T extends ClientMessage['type']>(
    type: T,
    timeoutMs = 2000,
  ): Promise<{ message: Extract<ClientMessage, { type: T }>; before: ClientMessage[] }> {
    const before: ClientMessage[] = [];
    for (;;) {
      const m = await this.readMessage(timeoutMs);
      if (m.type === type) return { message: m as Extract<ClientMessage, { type: T }>, before };
      before.push(m);
    }
  }

  /**
   * Server side of a 3.8 handshake with security None, then read the client's set-up
   * (SetPixelFormat, SetEncodings, the first FramebufferUpdateRequest).
   */
  async handshake(width = 64, height = 48, name = 'fake'): Promise<{ encodings: number[] }> {
    this.write(wire.version());
    await this.read(12);
    this.write(wire.securityTypes(1));
    await this.read(1);
    this.write(wire.securityResult(0));
    await this.read(1); // ClientInit
    this.write(wire.serverInit(width, height, name));
    const pf = await this.readMessage();
    const enc = await this.readMessage();
    const req = await this.readMessage();
    if (
      pf.type !== 'SetPixelFormat' ||
      enc.type !== 'SetEncodings' ||
      req.type !== 'FramebufferUpdateRequest'
    ) {
      throw new Error('fake server: unexpected set-up messages');
    }
    return { encodings: enc.encodings };
  }
}

export class FakeRfbServer {
  private readonly queue: FakeConnection[] = [];
  private waiter: (() => void) | undefined;
  readonly connections: FakeConnection[] = [];

  private constructor(
    readonly server: net.Server,
    readonly dir: string,
    readonly socketPath: string,
    readonly transport: 'unix' | 'tcp',
  ) {
    server.on('connection', (socket) => {
      const conn = new FakeConnection(socket);
      this.connections.push(conn);
      this.queue.push(conn);
      this.waiter?.();
    });
  }

  /** Listen on a unix socket in a fresh temp dir, or on 127.0.0.1 port 0. */
  static async start(transport: 'unix' | 'tcp' = 'unix'): Promise<FakeRfbServer> {
    const dir = mkdtempSync(path.join(tmpdir(), 'rfb-fake-'));
    const socketPath = path.join(dir, 'rfb.sock');
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (transport === 'unix') server.listen(socketPath, resolve);
      else server.listen(0, '127.0.0.1', resolve);
    });
    return new FakeRfbServer(server, dir, socketPath, transport);
  }

  get endpoint(): RfbEndpoint {
    if (this.transport === 'unix') return { kind: 'unix', path: this.socketPath };
    return {
      kind: 'tcp',
      host: '127.0.0.1',
      port: (this.server.address() as net.AddressInfo).port,
    };
  }

  async accept(timeoutMs = 2000): Promise<FakeConnection> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('fake server: no connection');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift() as FakeConnection;
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Wait until `cond` holds, polling; throws after the deadline. */
export async function waitFor(
  cond: () => boolean,
  timeoutMs = 2000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
