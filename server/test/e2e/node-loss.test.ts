/**
 * Losing a gateway node, as a user meets it (issue 11, decisions 11 and 12): real Chromium
 * through Debian's nginx (infra/nginx/vdi.conf.template) in front of two server processes on
 * one PostgreSQL and Redis, with a real Xvnc desktop.
 * - SIGTERM drains the node serving the viewer: its /readyz answers 503, the viewer is told to
 *   reconnect and comes back through nginx on the other node, to the same desktop.
 * - SIGKILL of the node serving the viewer: the viewer reconnects through nginx to the other
 *   node and shows its desktop again within 5 s (measured); no desktop is lost or started twice.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, openDesktop } from '../helpers/browser.js';
import { killLeftDesktop, type LeftDesktop, xvncUnder } from '../helpers/desktops.js';
import { freePort, ServerProcess, startNodes } from '../helpers/process-server.js';
import { ADMIN, until } from '../helpers/server.js';
// @ts-expect-error a plain .mjs module of the repository's infra (no types)
import { renderNginxConfig } from '../../../infra/nginx/render.mjs';

const PG_ADMIN = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** nginx's passive check: a node that failed gets no requests for this long */
const FAIL_TIMEOUT_S = 1;
const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';

interface VdiWindow {
  __vdiViewer?: { framesDrawn: number; desktopId?: string };
}

/** how many viewer sockets a node holds (its /metrics) */
async function socketsOn(node: ServerProcess): Promise<number> {
  const text = await fetch(`${node.url}/metrics`)
    .then((r) => r.text())
    .catch(() => '');
  const m = /^vdi_viewer_sockets (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('a gateway node lost behind nginx', () => {
  const dbName = `vdi_nodeloss_${randomBytes(4).toString('hex')}`;
  const url = PG_ADMIN.replace(/\/[^/]*$/, `/${dbName}`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-e2en-'));
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 've2n-'));
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'vdi-nginx-'));
  let nodes: ServerProcess[] = [];
  let nginx: ChildProcess;
  let db: pg.Client;
  let browser: Browser;
  let page: Page;
  let desktopId = '';
  let sessionId = '';
  /** when a node last came back (nginx takes it back after its fail timeout) */
  let restartedAt = 0;

  const drawn = () =>
    page.evaluate(() => (window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0);
  /** the viewer is connected again and has drawn frames after `n` */
  const back = (n: number, timeout: number) =>
    page.waitForFunction(
      (k) =>
        document.body.dataset.viewer === 'connected' &&
        ((window as unknown as VdiWindow).__vdiViewer?.framesDrawn ?? 0) > k,
      n,
      { timeout, polling: 20 },
    );
  const serving = async (): Promise<ServerProcess> =>
    until(
      async () => {
        for (const n of nodes) if ((await socketsOn(n)) > 0) return n;
        return undefined;
      },
      10_000,
      'the node serving the viewer',
    );
  const desktops = async () =>
    (await db.query<{ id: string; state: string }>('SELECT id, state FROM desktops')).rows;

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    const env = {
      DATABASE_URL: url,
      REDIS_URL: REDIS,
      DATA_DIR: dataDir,
      RUN_DIR: runDir,
      DEFAULT_GEOMETRY: '640x480',
      SESSION_SECRET: randomBytes(24).toString('hex'),
      HOST_NAME: 'host-1',
      BROKER_TICK_MS: '1000',
      SHUTDOWN_DRAIN_MS: '1500',
      PRESENCE_SWEEP_MS: '500',
      NODE_LEASE_MS: '3000',
    };
    nodes = await startNodes(env);
    db = new pg.Client({ connectionString: url });
    await db.connect();

    const port = await freePort();
    const conf = path.join(prefix, 'nginx.conf');
    fs.writeFileSync(
      conf,
      (renderNginxConfig as (o: object) => string)({
        prefix,
        listen: `127.0.0.1:${port}`,
        nodes: nodes.map((n) => `127.0.0.1:${n.port}`),
        failTimeoutSec: FAIL_TIMEOUT_S,
      }),
    );
    const t = spawnSync(NGINX, ['-p', prefix, '-c', conf, '-t'], { encoding: 'utf8' });
    expect(t.status, t.stderr).toBe(0);
    nginx = spawn(NGINX, ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: 'ignore' });
    const lb = `http://127.0.0.1:${port}`;
    await until(
      async () => (await fetch(`${lb}/healthz`).catch(() => undefined))?.status === 200,
      10_000,
      'nginx up',
    );

    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1024, height: 768 } })).newPage();
    await page.goto(lb + '/');
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await openDesktop(page, page.getByRole('button', { name: 'Connect' }).first());
    await back(0, 60_000);
    desktopId = await page.evaluate(
      () => (window as unknown as VdiWindow).__vdiViewer?.desktopId ?? '',
    );
    expect(desktopId).not.toBe('');
    sessionId = (await db.query<{ id: string }>("SELECT id FROM sessions WHERE state <> 'ended'"))
      .rows[0]!.id;
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    const handles = db
      ? (await db.query<{ handle: string | null }>('SELECT handle FROM desktops')).rows
      : [];
    for (const n of nodes) await n.stop('SIGKILL');
    nginx?.kill('SIGTERM');
    await db?.end();
    for (const { handle } of handles)
      await killLeftDesktop(handle ? (JSON.parse(handle) as LeftDesktop) : undefined);
    await until(() => xvncUnder(runDir).length === 0, 10_000, 'no Xvnc left');
    const admin = new pg.Client({ connectionString: PG_ADMIN });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    for (const d of [dataDir, runDir, prefix]) fs.rmSync(d, { recursive: true, force: true });
  });

  it('SIGTERM drains: /readyz 503, the viewer is told to move and comes back on the other node', async () => {
    const node = await serving();
    const other = nodes.find((n) => n !== node)!;
    const n = await drawn();
    const stopped = node.stop('SIGTERM');
    const ready = await until(
      async () => {
        const r = await fetch(`${node.url}/readyz`);
        return r.status === 503 ? r : undefined;
      },
      1500,
      'readyz 503 during the drain',
      20,
    );
    expect(await ready.json()).toMatchObject({ draining: true });
    await page.getByText(/server is restarting/i).waitFor({ state: 'visible', timeout: 10_000 });
    await back(n, 30_000);
    expect(await socketsOn(other)).toBe(1);
    await stopped;
    expect(await page.evaluate(() => (window as unknown as VdiWindow).__vdiViewer?.desktopId)).toBe(
      desktopId,
    );
    await node.start();
    restartedAt = Date.now();
  }, 90_000);

  it('SIGKILL of the serving node: back on the other node with its desktop within 5 s, nothing lost or doubled', async () => {
    const node = await serving();
    const other = nodes.find((n) => n !== node)!;
    const before = await desktops();
    expect(before).toEqual([{ id: desktopId, state: 'in-use' }]);
    // nginx marked the node the drain stopped as failed: once its fail timeout is over it is
    // a live upstream again (otherwise losing the other node leaves nginx none for a moment)
    await until(
      () => Date.now() - restartedAt > FAIL_TIMEOUT_S * 1000 + 200,
      10_000,
      "nginx's fail timeout over",
    );
    const n = await drawn();
    await page.evaluate(() => {
      const w = window as unknown as { __t: string[] };
      const t0 = performance.now();
      w.__t = [];
      new MutationObserver(() =>
        w.__t.push(`${Math.round(performance.now() - t0)} ${document.body.dataset.viewer}`),
      ).observe(document.body, { attributes: true, attributeFilter: ['data-viewer'] });
    });
    const t0 = Date.now();
    await node.stop('SIGKILL');
    await back(n, 15_000);
    const ms = Date.now() - t0;
    console.log(`node loss: viewer back on the other node with its desktop in ${ms} ms`);
    console.log(await page.evaluate(() => (window as unknown as { __t: string[] }).__t));
    expect(ms).toBeLessThan(5000);
    expect(await socketsOn(other)).toBe(1);
    expect(await page.evaluate(() => (window as unknown as VdiWindow).__vdiViewer?.desktopId)).toBe(
      desktopId,
    );
    // the lost node comes back and reconciles: the same session, still active, on the same
    // one desktop: none lost, none started twice
    await node.start();
    expect(await desktops()).toEqual([{ id: desktopId, state: 'in-use' }]);
    const s = await db.query<{ id: string; state: string }>(
      "SELECT id, state FROM sessions WHERE state <> 'ended'",
    );
    expect(s.rows).toEqual([{ id: sessionId, state: 'active' }]);
  }, 90_000);
});
