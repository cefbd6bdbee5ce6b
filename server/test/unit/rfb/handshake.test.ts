import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/rfb/byte-queue.js';
import { RfbError, RfbProtocolError } from '../../../src/rfb/errors.js';
import {
  Handshake,
  type HandshakeOptions,
  type HandshakeResult,
} from '../../../src/rfb/handshake.js';
import { DEFAULT_RFB_LIMITS } from '../../../src/rfb/types.js';
import { vncAuthResponse } from '../../../src/rfb/vnc-auth.js';
import * as w from './helpers/server-wire.js';

interface Run {
  sent: Buffer[];
  result: HandshakeResult | undefined;
  error: unknown;
  handshake: Handshake;
  queue: ByteQueue;
}

/** Feed server bytes (in the given chunks) to a fresh handshake, collecting what it sends. */
function run(chunks: Buffer[], options: Partial<HandshakeOptions> = {}): Run {
  const sent: Buffer[] = [];
  const handshake = new Handshake({ shared: true, ...options }, (b) => sent.push(Buffer.from(b)));
  const queue = new ByteQueue();
  let result: HandshakeResult | undefined;
  let error: unknown;
  try {
    for (const c of chunks) {
      queue.push(c);
      result = handshake.advance(queue) ?? result;
    }
  } catch (err) {
    error = err;
  }
  return { sent, result, error, handshake, queue };
}

function expectProtocolError(err: unknown, code: string, text?: RegExp): void {
  expect(err).toBeInstanceOf(RfbProtocolError);
  expect((err as RfbProtocolError).code).toBe(code);
  if (text) expect((err as Error).message).toMatch(text);
}

const CHALLENGE = Buffer.from('0123456789abcdef', 'latin1');

describe('ProtocolVersion', () => {
  it.each([
    ['003.008', 'RFB 003.008\n'],
    ['003.007', 'RFB 003.007\n'],
    ['003.003', 'RFB 003.003\n'],
    ['003.005', 'RFB 003.003\n'], // a known mislabel of 3.3
    ['003.889', 'RFB 003.008\n'], // Apple: above 3.8
    ['004.001', 'RFB 003.008\n'], // RealVNC 4.x / Intel AMT
  ])('answers server %s with %j', (server, reply) => {
    const r = run([w.version(server)]);
    expect(r.error).toBeUndefined();
    expect(r.sent.map(String)).toEqual([reply]);
  });

  it.each([
    ['no newline', 'RFB 003.008 '],
    ['short numbers', 'RFB 03.0008\n'],
    ['letters', 'RFB 003.00a\n'],
    ['lower case', 'rfb 003.008\n'],
  ])('rejects a malformed version (%s)', (_name, text) => {
    const r = run([Buffer.from(text, 'latin1')]);
    expectProtocolError(r.error, 'bad-version');
    expect(r.sent).toEqual([]);
  });

  it('rejects a non-RFB greeting on its first bytes without waiting for 12', () => {
    const r = run([Buffer.from('SSH', 'latin1')]);
    expectProtocolError(r.error, 'bad-version', /not an RFB server: it greeted with "SSH"/);
  });

  it('rejects versions before 3.3', () => {
    expectProtocolError(run([w.version('002.009')]).error, 'unsupported-version', /3\.3 or later/);
  });

  it('waits for a version split byte by byte', () => {
    const bytes = w.version();
    const r = run([bytes.subarray(0, 11)]);
    expect(r.error).toBeUndefined();
    expect(r.sent).toEqual([]);
    expect(r.handshake.step).toBe('version');
  });
});

describe('Security', () => {
  it('3.8 None: selects 1, reads SecurityResult, sends ClientInit with shared-flag 1', () => {
    const r = run([w.version(), w.securityTypes(1), w.securityResult(0)]);
    expect(r.error).toBeUndefined();
    expect(r.sent.slice(1)).toEqual([Buffer.from([1]), Buffer.from([1])]);
    expect(r.handshake.step).toBe('server-init');
  });

  it('sends shared-flag 0 when asked for exclusive access', () => {
    const r = run([w.version(), w.securityTypes(1), w.securityResult(0)], { shared: false });
    expect(r.sent.at(-1)).toEqual(Buffer.from([0]));
  });

  it('3.8 VNC auth: answers the challenge with the DES response', () => {
    const r = run([w.version(), w.securityTypes(2), CHALLENGE, w.securityResult(0)], {
      password: 'secret',
    });
    expect(r.error).toBeUndefined();
    expect(r.sent[1]).toEqual(Buffer.from([2]));
    expect(r.sent[2]).toEqual(vncAuthResponse(CHALLENGE, 'secret'));
    expect(r.sent[3]).toEqual(Buffer.from([1]));
  });

  it('prefers VNC auth when a password is configured and None otherwise', () => {
    expect(run([w.version(), w.securityTypes(1, 2)], { password: 'pw' }).sent[1]).toEqual(
      Buffer.from([2]),
    );
    expect(run([w.version(), w.securityTypes(2, 1)]).sent[1]).toEqual(Buffer.from([1]));
  });

  it('ignores types it does not speak when an acceptable one is offered', () => {
    const r = run([w.version(), w.securityTypes(19, 18, 1)]);
    expect(r.error).toBeUndefined();
    expect(r.sent[1]).toEqual(Buffer.from([1]));
  });

  it('fails when the server requires VNC auth and no password is configured', () => {
    const r = run([w.version(), w.securityTypes(2)]);
    expectProtocolError(r.error, 'password-required', /no password is configured/);
    expect(r.sent).toHaveLength(1); // nothing chosen
  });

  it('fails when neither None nor VNC auth is offered', () => {
    const r = run([w.version(), w.securityTypes(19, 18)], { password: 'pw' });
    expectProtocolError(r.error, 'no-acceptable-security', /VeNCrypt \(19\), TLS \(18\)/);
  });

  it('reports the reason of a refusal (zero security types)', () => {
    const r = run([w.version(), w.securityRefused('too many connections')]);
    expectProtocolError(r.error, 'security-refused', /too many connections/);
  });

  it('reports the reason of an authentication failure (3.8)', () => {
    const r = run(
      [
        w.version(),
        w.securityTypes(2),
        CHALLENGE,
        w.securityResult(1),
        w.reasonString('Authentication failed'),
      ],
      {
        password: 'wrong',
      },
    );
    expectProtocolError(r.error, 'auth-failed', /VNC authentication failed: Authentication failed/);
  });

  it('does not wait for (or allocate) an over-long failure reason', () => {
    const r = run([w.version(), w.securityTypes(1), w.securityResult(1), w.u32(0x7fff_ffff)]);
    expectProtocolError(r.error, 'auth-failed', /2147483647-byte reason.*not shown/);
  });

  it('waits for a failure reason that is still arriving', () => {
    const reason = w.reasonString('nope');
    const r = run([w.version(), w.securityTypes(1), w.securityResult(1), reason.subarray(0, 6)]);
    expect(r.error).toBeUndefined();
    expect(r.handshake.step).toBe('security-result-reason');
    expect(r.handshake.errorOnClose()).toMatchObject({ code: 'auth-failed' });
  });

  it('3.7 None: no SecurityResult, ClientInit right away', () => {
    const r = run([w.version('003.007'), w.securityTypes(1)]);
    expect(r.sent.map((b) => b.toString('latin1'))).toEqual(['RFB 003.007\n', '\x01', '\x01']);
    expect(r.handshake.step).toBe('server-init');
  });

  it('3.7 VNC auth failure has no reason string', () => {
    const r = run([w.version('003.007'), w.securityTypes(2), CHALLENGE, w.securityResult(1)], {
      password: 'x',
    });
    expectProtocolError(r.error, 'auth-failed', /rejected the password/);
  });

  it('3.3: the server chooses None', () => {
    const r = run([w.version('003.003'), w.u32(1)]);
    expect(r.sent.map((b) => b.toString('latin1'))).toEqual(['RFB 003.003\n', '\x01']);
    expect(r.handshake.step).toBe('server-init');
  });

  it('3.3: the server chooses VNC auth', () => {
    const r = run([w.version('003.003'), w.u32(2), CHALLENGE, w.securityResult(0)], {
      password: 'pw',
    });
    expect(r.sent[1]).toEqual(vncAuthResponse(CHALLENGE, 'pw'));
    expect(r.handshake.step).toBe('server-init');
  });

  it('3.3: a refusal carries a reason', () => {
    expectProtocolError(
      run([w.version('003.003'), w.u32(0), w.reasonString('go away')]).error,
      'security-refused',
      /go away/,
    );
  });

  it('3.3: the server cannot impose a type we do not speak', () => {
    expectProtocolError(
      run([w.version('003.003'), w.u32(16)]).error,
      'no-acceptable-security',
      /Tight \(16\)/,
    );
  });

  it('a hang-up mid-handshake is reported by step', () => {
    const early = run([w.version()]);
    expect(early.handshake.errorOnClose()).toBeInstanceOf(RfbError);
    expect(early.handshake.errorOnClose().code).toBe('server-closed');
    const afterAuth = run([w.version(), w.securityTypes(2), CHALLENGE], { password: 'pw' });
    expect(afterAuth.handshake.errorOnClose().message).toMatch(/check the password/);
  });
});

describe('ServerInit', () => {
  const prefix = w.cat(w.version(), w.securityTypes(1), w.securityResult(0));

  it('reads size and name and leaves later bytes in the queue', () => {
    const r = run([prefix, w.serverInit(1024, 768, 'bürö desktop'), w.bell()]);
    expect(r.error).toBeUndefined();
    expect(r.result).toEqual({
      version: '3.8',
      security: 'none',
      width: 1024,
      height: 768,
      name: 'bürö desktop',
    });
    expect(r.queue.available).toBe(1);
    expect(r.handshake.step).toBe('done');
  });

  it('falls back to Latin-1 for a name that is not UTF-8', () => {
    const init = w.cat(w.serverInit(10, 10, ''), Buffer.from([0xe9]));
    init.writeUInt32BE(1, 20);
    expect(run([prefix, init]).result?.name).toBe('é');
  });

  it.each([
    [0, 768],
    [1024, 0],
  ])('rejects a %ix%i framebuffer', (width, height) => {
    expectProtocolError(run([prefix, w.serverInit(width, height)]).error, 'bad-framebuffer-size');
  });

  it.each([
    [16385, 768],
    [16384, 16384],
    [8192, 8192],
  ])('refuses a %ix%i framebuffer as too large', (width, height) => {
    expectProtocolError(
      run([prefix, w.serverInit(width, height)]).error,
      'framebuffer-too-large',
      /this pool accepts at most 8192x8192 and 16\.8 megapixels/,
    );
  });

  it('rejects an over-long name from the header alone', () => {
    const header = w.serverInit(10, 10, '').subarray(0, 20);
    const r = run([prefix, header, w.u32(DEFAULT_RFB_LIMITS.maxNameLength + 1)]);
    expectProtocolError(r.error, 'name-too-long', /4097 bytes/);
  });

  it('gives the same replies and result however the stream is split (fast-check)', () => {
    const stream = w.cat(
      w.version(),
      w.securityTypes(1, 2),
      CHALLENGE,
      w.securityResult(0),
      w.serverInit(800, 600, 'x'),
    );
    const whole = run([stream], { password: 'pw' });
    expect(whole.result).toBeDefined();
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 30 }),
        (cuts) => {
          const r = run(w.splitAt(stream, cuts), { password: 'pw' });
          expect(r.error).toBeUndefined();
          expect(r.result).toEqual(whole.result);
          expect(Buffer.concat(r.sent)).toEqual(Buffer.concat(whole.sent));
        },
      ),
    );
  });

  it('gives the same result fed byte by byte', () => {
    const stream = w.cat(prefix, w.serverInit(800, 600, 'desk'));
    const r = run(Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1)));
    expect(r.result).toMatchObject({ width: 800, height: 600, name: 'desk' });
  });
});
