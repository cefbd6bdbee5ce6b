import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { probeBanner } from '../../../src/rfb/probe.js';
import { closedPort, LoopbackServers } from '../../helpers/loopback-servers.js';

const servers = new LoopbackServers();
afterEach(() => servers.close());

const tcp = (port: number) => ({ kind: 'tcp' as const, host: '127.0.0.1', port });

describe('probeBanner', () => {
  it('accepts an RFB banner, even one sent byte by byte', async () => {
    const port = await servers.serve((s) => {
      const bytes = Buffer.from('RFB 003.003\n');
      let i = 0;
      const t = setInterval(() => {
        if (i >= bytes.length || s.destroyed) clearInterval(t);
        else s.write(bytes.subarray(i, ++i));
      }, 2);
    });
    expect(await probeBanner(tcp(port), 2000)).toEqual({ ok: true, version: '003.003' });
  });

  it('rejects garbage', async () => {
    const port = await servers.serve((s) => s.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const r = await probeBanner(tcp(port), 2000);
    expect(r).toMatchObject({ ok: false, kind: 'not-rfb' });
  });

  it('times out on a silent server', async () => {
    const port = await servers.serve(() => undefined);
    const r = await probeBanner(tcp(port), 150);
    expect(r).toMatchObject({ ok: false, kind: 'timeout' });
  });

  it('reports a refused connection', async () => {
    const r = await probeBanner(tcp(await closedPort()), 2000);
    expect(r).toMatchObject({ ok: false, kind: 'refused' });
  });

  it('reports a server that hangs up before the banner', async () => {
    const port = await servers.serve((s) => s.end('RFB'));
    expect(await probeBanner(tcp(port), 2000)).toMatchObject({ ok: false, kind: 'not-rfb' });
  });

  it('reports a missing unix socket as an error, not as a refusal', async () => {
    const missing = path.join(os.tmpdir(), `vdi-probe-missing-${process.pid}.sock`);
    const r = await probeBanner({ kind: 'unix', path: missing }, 2000);
    expect(r).toMatchObject({ ok: false, kind: 'error', received: 0 });
    expect(r.ok === false && r.reason).toMatch(/^ENOENT/);
  });
});
