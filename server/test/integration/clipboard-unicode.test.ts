import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deletePoolsAndClose,
  desktopHandle,
  expectNoXvncLeft,
  PARKED_BROKER,
  startXvncServer,
  xInvocation,
} from '../helpers/desktops.js';
import { Api, ADMIN, tempDirs, testConfig, until, type TestServer } from '../helpers/server.js';
import { Viewers } from '../helpers/viewer.js';

/*
 * Unicode clipboard both ways between a real Xvnc (TigerVNC, Extended Clipboard with UTF-8)
 * and a real Socket.IO viewer: text copied in the desktop (xclip) reaches the viewer intact,
 * text sent by the viewer pastes intact in the desktop (xclip -o).
 */

const run = promisify(execFile);
const dirs = tempDirs('vdicb');
const FIRST_DISPLAY = 200;
let ts: TestServer;
let admin: Api;
const pools: string[] = [];
const viewers = new Viewers();
const kids: Array<ReturnType<typeof spawn>> = [];

beforeAll(async () => {
  ts = await startXvncServer(testConfig(PARKED_BROKER, dirs), FIRST_DISPLAY);
  admin = await new Api(ts.url).login(ADMIN.username, ADMIN.password);
});

afterAll(async () => {
  try {
    for (const k of kids) k.kill('SIGKILL');
    viewers.closeAll();
    if (ts) await deletePoolsAndClose(ts, admin, pools);
  } finally {
    expectNoXvncLeft(dirs);
  }
});

describe('clipboard (real Xvnc)', () => {
  it('carries Unicode text both ways', async () => {
    const p = await admin.post('/api/admin/pools', {
      name: 'clip',
      provider: 'xvnc',
      template: { width: 640, height: 480 },
      maxSize: 1,
    });
    expect(p.status).toBe(201);
    pools.push(p.body.id);
    const me = await admin.get('/api/auth/me');
    await admin.post('/api/admin/entitlements', {
      poolId: p.body.id,
      principalType: 'user',
      principalId: (me.body as { id: string }).id,
    });
    const c = await admin.post(`/api/pools/${p.body.id}/connect`);
    expect(c.status).toBe(200);
    const v = await viewers.attached(ts.url, admin.cookie, c.body.sessionId);
    const got: string[] = [];
    v.socket.on('clipboard', (m) => got.push(m.text));
    const desktop = await desktopHandle(ts, c.body.desktopId);

    // desktop → viewer
    const fromDesktop = 'Zoë – 東京 🙂 «ünïcödé»';
    const inv = xInvocation(desktop, ['xclip', '-selection', 'clipboard', '-loops', '3']);
    const xclip = spawn(inv.file, inv.args, {
      env: inv.env,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    kids.push(xclip);
    xclip.stdin.end(fromDesktop);
    await until(() => got.includes(fromDesktop), 15_000, 'the desktop clipboard in the viewer');

    // viewer → desktop
    const fromViewer = 'Grüße aus Köln — 你好 ✓';
    v.socket.emit('clipboard', { text: fromViewer });
    await until(
      async () => {
        const out = xInvocation(desktop, ['xclip', '-o', '-selection', 'clipboard']);
        const r = await run(out.file, out.args, { env: out.env, timeout: 5000 });
        return r.stdout === fromViewer;
      },
      15_000,
      'the viewer clipboard pasted in the desktop',
    );
  });
});
