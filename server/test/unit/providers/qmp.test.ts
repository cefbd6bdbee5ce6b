import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient, qmpExecute } from '../../../src/providers/qemu/qmp-client.js';
import { LineSplitter, QmpError, type QmpEvent } from '../../../src/providers/qemu/qmp-wire.js';

const GREETING = {
  QMP: {
    version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian' },
    capabilities: ['oob'],
  },
};

interface Command {
  execute: string;
  id?: unknown;
  arguments?: Record<string, unknown>;
}

/** One accepted connection of the fake QEMU: what the client sent, and a way to answer. */
class FakeConn {
  readonly commands: Command[] = [];
  private waiters: Array<() => void> = [];
  private buf = '';
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) !== -1) {
        this.commands.push(JSON.parse(this.buf.slice(0, nl)) as Command);
        this.buf = this.buf.slice(nl + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
  }

  send(msg: unknown): void {
    this.socket.write(`${JSON.stringify(msg)}\r\n`);
  }

  raw(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** resolves with the n-th command (0-based) once it has arrived */
  async command(n: number): Promise<Command> {
    while (this.commands.length <= n) {
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return this.commands[n]!;
  }

  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }
}

/** A fake QMP server: greets (unless told not to) and answers qmp_capabilities. */
class FakeQmp {
  readonly conns: FakeConn[] = [];
  private connWaiters: Array<() => void> = [];
  greet = true;
  negotiate = true;
  private readonly server: net.Server;

  constructor(readonly path: string) {
    this.server = net.createServer((socket) => {
      const conn = new FakeConn(socket);
      this.conns.push(conn);
      if (this.greet) conn.send(GREETING);
      if (this.greet && this.negotiate) {
        void conn.command(0).then(
          (c) => conn.send({ return: {}, id: c.id }),
          () => undefined,
        );
      }
      for (const w of this.connWaiters.splice(0)) w();
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  async conn(n: number): Promise<FakeConn> {
    while (this.conns.length <= n) await new Promise<void>((r) => this.connWaiters.push(r));
    return this.conns[n]!;
  }

  close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let dir: string;
let fake: FakeQmp;
let counter = 0;
const clients: QmpClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vdi-qmp-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function startFake(): Promise<FakeQmp> {
  fake = new FakeQmp(path.join(dir, `qmp-${++counter}.sock`));
  await fake.listen();
  return fake;
}

async function connect(opts: Parameters<typeof QmpClient.connect>[1] = {}): Promise<QmpClient> {
  const client = await QmpClient.connect(fake.path, opts);
  clients.push(client);
  return client;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await fake?.close();
});

function expectQmpError(err: unknown, code: string): QmpError {
  expect(err).toBeInstanceOf(QmpError);
  expect((err as QmpError).code).toBe(code);
  return err as QmpError;
}

describe('LineSplitter', () => {
  it('gives the same lines however the stream is split', () => {
    const text = Buffer.from('{"a":1}\r\n{"b":"xyz"}\n\n{"c":[1,2]}\n');
    const whole = new LineSplitter(100).push(text);
    const splitter = new LineSplitter(100);
    const bytewise: string[] = [];
    for (const byte of text) bytewise.push(...splitter.push(Buffer.from([byte])));
    expect(bytewise).toEqual(whole);
    expect(whole).toEqual(['{"a":1}\r', '{"b":"xyz"}', '', '{"c":[1,2]}']);
  });

  it('rejects a line over the cap before its newline arrives', () => {
    const splitter = new LineSplitter(8);
    expect(splitter.push(Buffer.from('12345'))).toEqual([]);
    expect(() => splitter.push(Buffer.from('6789'))).toThrow(/longer than 8 bytes/);
    expect(new LineSplitter(8).push(Buffer.from('12345678\n'))).toEqual(['12345678']);
  });
});

describe('greeting and capabilities', () => {
  it('reads the greeting and negotiates before any command', async () => {
    await startFake();
    const client = await connect();
    expect(client.greeting.version.qemu).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(client.greeting.capabilities).toEqual(['oob']);
    const conn = await fake.conn(0);
    expect(conn.commands[0]).toMatchObject({ execute: 'qmp_capabilities' });
    expect(typeof conn.commands[0]!.id).toBe('string');
  });

  it('fails with QMP_CONNECT when nothing listens', async () => {
    await startFake();
    const err = await QmpClient.connect(path.join(dir, 'missing.sock')).catch((e: unknown) => e);
    expectQmpError(err, 'QMP_CONNECT');
  });

  it('fails with QMP_TIMEOUT when the peer accepts but never greets (a stopped QEMU)', async () => {
    await startFake();
    fake.greet = false;
    const started = Date.now();
    const err = await QmpClient.connect(fake.path, { timeoutMs: 200 }).catch((e: unknown) => e);
    expectQmpError(err, 'QMP_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(2000);
    await (await fake.conn(0)).waitClosed();
  });

  it('fails with QMP_PROTOCOL when the first message is not a greeting', async () => {
    await startFake();
    fake.greet = false;
    const pending = QmpClient.connect(fake.path, { timeoutMs: 2000 }).catch((e: unknown) => e);
    (await fake.conn(0)).send({ return: {}, id: 'x' });
    expectQmpError(await pending, 'QMP_PROTOCOL');
  });

  it('fails when capability negotiation is refused', async () => {
    await startFake();
    fake.negotiate = false;
    const pending = QmpClient.connect(fake.path).catch((e: unknown) => e);
    const conn = await fake.conn(0);
    const cmd = await conn.command(0);
    conn.send({ error: { class: 'GenericError', desc: 'no' }, id: cmd.id });
    const err = expectQmpError(await pending, 'QMP_COMMAND');
    expect(err.errorClass).toBe('GenericError');
  });
});

describe('commands', () => {
  it('matches answers to commands by id, whatever their order', async () => {
    await startFake();
    const client = await connect();
    const conn = await fake.conn(0);
    const a = client.execute('query-status');
    const b = client.execute('query-name', { x: 1 });
    const [ca, cb] = [await conn.command(1), await conn.command(2)];
    expect(cb.arguments).toEqual({ x: 1 });
    expect(ca.arguments).toBeUndefined();
    conn.send({ return: { name: 'b' }, id: cb.id });
    conn.send({ return: { status: 'running' }, id: ca.id });
    expect(await a).toEqual({ status: 'running' });
    expect(await b).toEqual({ name: 'b' });
  });

  it('turns error answers into QMP_COMMAND errors with the class', async () => {
    await startFake();
    const client = await connect();
    const conn = await fake.conn(0);
    const p = client.execute('nope').catch((e: unknown) => e);
    const c = await conn.command(1);
    conn.send({
      error: { class: 'CommandNotFound', desc: 'The command nope has not been found' },
      id: c.id,
    });
    const err = expectQmpError(await p, 'QMP_COMMAND');
    expect(err.errorClass).toBe('CommandNotFound');
    expect(err.message).toContain('nope');
    // the connection is still usable
    const q = client.execute('query-status');
    conn.send({ return: { status: 'paused' }, id: (await conn.command(2)).id });
    expect(await q).toEqual({ status: 'paused' });
  });

  it('times out a command, drops its late answer and keeps working', async () => {
    await startFake();
    const client = await connect({ commandTimeoutMs: 100 });
    const conn = await fake.conn(0);
    const err = await client.execute('slow').catch((e: unknown) => e);
    expectQmpError(err, 'QMP_TIMEOUT');
    const slow = await conn.command(1);
    conn.send({ return: {}, id: slow.id }); // late: must not be a protocol error
    const next = client.execute('query-status', undefined, { timeoutMs: 2000 });
    conn.send({ return: { status: 'running' }, id: (await conn.command(2)).id });
    expect(await next).toEqual({ status: 'running' });
    expect(client.closed).toBe(false);
  });

  it('delivers events that arrive between answers', async () => {
    await startFake();
    const client = await connect();
    const conn = await fake.conn(0);
    const events: QmpEvent[] = [];
    client.onEvent((e) => events.push(e));
    const p = client.execute('stop');
    const c = await conn.command(1);
    conn.send({ event: 'STOP', timestamp: { seconds: 1, microseconds: 2 } });
    conn.send({ return: {}, id: c.id });
    await p;
    expect(events).toEqual([{ event: 'STOP', timestamp: { seconds: 1, microseconds: 2 } }]);
    conn.send({
      event: 'RESET',
      data: { guest: true },
      timestamp: { seconds: 3, microseconds: 4 },
    });
    await expect.poll(() => events.length).toBe(2);
    expect(events[1]!.data).toEqual({ guest: true });
  });

  it('parses a stream split byte by byte', async () => {
    await startFake();
    const client = await connect();
    const conn = await fake.conn(0);
    const p = client.execute('query-status');
    const c = await conn.command(1);
    const bytes = Buffer.from(`${JSON.stringify({ return: { status: 'running' }, id: c.id })}\r\n`);
    for (const byte of bytes) conn.raw(Buffer.from([byte]));
    expect(await p).toEqual({ status: 'running' });
  });

  it('qmpExecute connects, runs one command and closes', async () => {
    await startFake();
    const p = qmpExecute(fake.path, 'query-status');
    const conn = await fake.conn(0);
    conn.send({ return: { status: 'running' }, id: (await conn.command(1)).id });
    expect(await p).toEqual({ status: 'running' });
    await conn.waitClosed();
  });
});

describe('bad input closes only that connection', () => {
  async function twoClients(): Promise<{
    bad: QmpClient;
    good: QmpClient;
    badConn: FakeConn;
    goodConn: FakeConn;
  }> {
    await startFake();
    const bad = await connect();
    const good = await connect();
    return { bad, good, badConn: await fake.conn(0), goodConn: await fake.conn(1) };
  }

  async function expectGoodStillWorks(good: QmpClient, goodConn: FakeConn): Promise<void> {
    const p = good.execute('query-status');
    goodConn.send({ return: { status: 'running' }, id: (await goodConn.command(1)).id });
    expect(await p).toEqual({ status: 'running' });
  }

  const cases: Array<[string, (c: FakeConn) => void, RegExp]> = [
    ['a line that is not JSON', (c) => c.raw('{"return": oops}\r\n'), /not JSON/],
    ['a JSON value that is not an object', (c) => c.raw('[1,2,3]\n'), /not a JSON object/],
    ['an unknown message shape', (c) => c.send({ hello: 1 }), /unknown QMP message/],
    [
      'a malformed error answer',
      (c) => c.send({ error: 'bad', id: 'vdi-2' }),
      /malformed QMP error/,
    ],
    ['a malformed event', (c) => c.send({ event: 'X' }), /malformed QMP event/],
    ['an answer for an id never sent', (c) => c.send({ return: {}, id: 'vdi-999' }), /unknown id/],
    ['an answer without id', (c) => c.send({ return: {} }), /without our id/],
    ['a second greeting', (c) => c.send(GREETING), /second QMP greeting/],
    ['an oversized line', (c) => c.raw(Buffer.alloc(2 * 1024 * 1024, 0x41)), /longer than/],
  ];

  for (const [name, sendBad, message] of cases) {
    it(`closes on ${name}`, async () => {
      const { bad, good, badConn, goodConn } = await twoClients();
      const closed = new Promise<QmpError | undefined>((resolve) => bad.onClose(resolve));
      const pending = bad.execute('query-status').catch((e: unknown) => e);
      await badConn.command(1);
      sendBad(badConn);
      const err = expectQmpError(await pending, 'QMP_PROTOCOL');
      expect(err.message).toMatch(message);
      expect((await closed)?.code).toBe('QMP_PROTOCOL');
      expect(bad.closed).toBe(true);
      await badConn.waitClosed();
      // later commands fail fast with the same reason
      expectQmpError(await bad.execute('query-status').catch((e: unknown) => e), 'QMP_PROTOCOL');
      await expectGoodStillWorks(good, goodConn);
    });
  }

  it('rejects pending commands with QMP_CLOSED when QEMU goes away', async () => {
    const { bad, good, badConn, goodConn } = await twoClients();
    const pending = bad.execute('quit').catch((e: unknown) => e);
    await badConn.command(1);
    badConn.socket.destroy();
    expectQmpError(await pending, 'QMP_CLOSED');
    await expectGoodStillWorks(good, goodConn);
  });

  it('close() is idempotent and rejects what is pending', async () => {
    const { bad } = await twoClients();
    const pending = bad.execute('query-status').catch((e: unknown) => e);
    bad.close();
    bad.close();
    expectQmpError(await pending, 'QMP_CLOSED');
  });
});
