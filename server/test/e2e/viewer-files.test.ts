/**
 * Issue 13, files, end to end: real Chromium, the real server process, a real sandboxed Xvnc
 * desktop with a 32 MiB home disk. Upload through the Files panel's button and by dropping a
 * file on the viewer → the files are in the desktop's ~/Uploads, the desktop's own; a file
 * too large for the pool and one too large for the disk fail with a clear message and leave
 * nothing behind; a file the desktop puts in ~/Downloads downloads byte-identical; symlinks
 * planted by the desktop do not lead out of its home; only the owner transfers; every
 * transfer is audited.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext, Page } from 'playwright-core';
import type { Pool } from '@vdi/shared';
import type { XvncHandle } from '../../src/providers/xvnc/handle.js';
import { asDesktop, MediaRig, screenshot } from '../helpers/media.js';
import { Api, until } from '../helpers/server.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

describe('files: upload into ~/Uploads, download from ~/Downloads', () => {
  const rig = new MediaRig();
  let pool: Pool;
  let ctx: BrowserContext;
  let page: Page;
  let sessionId = '';
  let desktop: XvncHandle;

  const filesPanel = () => page.getByRole('complementary', { name: 'Files' });
  const openPanel = async () => {
    if (await filesPanel().isHidden()) {
      // the toolbar fades while the desktop is used: the pointer at the top edge brings it back
      await page.mouse.move(640, 2);
      await page.getByRole('button', { name: 'Files' }).click();
    }
    await filesPanel().waitFor();
  };
  /** the upload row of a file, once it is done or failed */
  const outcome = async (name: string) => {
    const row = filesPanel().locator('li', { hasText: name }).first();
    await expect
      .poll(() => row.getAttribute('data-state'), { timeout: 60_000 })
      .toMatch(/done|failed/);
    return { state: await row.getAttribute('data-state'), text: await row.innerText() };
  };
  const uploadsAsDesktop = () =>
    asDesktop(desktop, 'ls -lna Uploads').then((s) =>
      s
        .split('\n')
        .slice(1)
        .filter((l) => l.trim() && !/ \.\.?$/.test(l)),
    );

  beforeAll(async () => {
    await rig.start();
    pool = await rig.pool('files', { maxUploadMb: 24, limits: { diskMb: 32 } });
    ctx = await rig.context({ acceptDownloads: true });
    ({ page, sessionId } = await rig.viewer(ctx, pool));
    desktop = rig.desktopOf(sessionId);
  });

  afterAll(async () => {
    await rig.stop();
  });

  it('uploads with the button: the file lands in ~/Uploads, owned by the desktop', async () => {
    const data = randomBytes(3 * MiB + 17);
    await openPanel();
    await filesPanel()
      .getByLabel('Files to upload')
      .setInputFiles({ name: 'report.bin', mimeType: 'application/octet-stream', buffer: data });
    const r = await outcome('report.bin');
    expect(r.state, r.text).toBe('done');
    expect(r.text).toContain('Saved as Uploads/report.bin');
    expect(await filesPanel().getByLabel('Uploading report.bin').getAttribute('value')).toBe(
      String(data.length),
    );
    // as the desktop sees it: its own file, the bytes sent
    const ls = await uploadsAsDesktop();
    expect(ls.join('\n')).toMatch(
      new RegExp(
        `${desktop.account!.uid} +${desktop.account!.gid} +${data.length} .* report\\.bin`,
      ),
    );
    expect((await asDesktop(desktop, 'sha256sum Uploads/report.bin')).split(' ')[0]).toBe(
      sha(data),
    );
    // a second file of the same name does not overwrite the first
    await filesPanel()
      .getByLabel('Files to upload')
      .setInputFiles({ name: 'report.bin', mimeType: 'text/plain', buffer: Buffer.from('v2') });
    await until(
      async () => (await filesPanel().innerText()).includes('Saved as Uploads/report (1).bin'),
      30_000,
      'the second upload renamed',
    );
  });

  it('uploads a file dropped on the viewer', async () => {
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['dropped on the desktop\n'], 'dropped.txt', { type: 'text/plain' }));
      const target = document.querySelector('.viewer-stage')!;
      target.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true }));
      target.dispatchEvent(
        new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }),
      );
    });
    const r = await outcome('dropped.txt');
    expect(r.state, r.text).toBe('done');
    expect(await asDesktop(desktop, 'cat Uploads/dropped.txt')).toBe('dropped on the desktop\n');
  });

  it('refuses a file over the pool limit, and one the disk cannot hold, leaving nothing', async () => {
    await openPanel();
    const before = await uploadsAsDesktop();
    await filesPanel()
      .getByLabel('Files to upload')
      .setInputFiles({
        name: 'huge.bin',
        mimeType: 'application/octet-stream',
        buffer: Buffer.alloc(25 * MiB, 1),
      });
    const big = await outcome('huge.bin');
    expect(big.state).toBe('failed');
    expect(big.text).toMatch(/larger than this pool allows \(24 MiB\)/);

    // fill the 32 MiB home most of the way as the desktop, then upload more than is left
    await asDesktop(desktop, 'head -c 12582912 /dev/zero > filler.bin');
    await filesPanel()
      .getByLabel('Files to upload')
      .setInputFiles({
        name: 'toomuch.bin',
        mimeType: 'application/octet-stream',
        buffer: randomBytes(20 * MiB),
      });
    const full = await outcome('toomuch.bin');
    expect(full.state).toBe('failed');
    expect(full.text).toMatch(/disk is full/);
    // nothing partial: no temporary file, no toomuch.bin, the space is free again
    expect(await uploadsAsDesktop()).toEqual(before);
    await asDesktop(desktop, 'rm filler.bin');
    const free = Number((await asDesktop(desktop, 'df -k --output=avail . | tail -1')).trim());
    expect(free * 1024).toBeGreaterThan(20 * MiB);
  });

  it('leaves nothing when the browser goes away in the middle of an upload', async () => {
    const url = new URL(`${rig.server.url}/api/sessions/${sessionId}/files/uploads?name=cut.bin`);
    const req = http.request(url, {
      method: 'POST',
      headers: {
        cookie: rig.admin.cookie,
        'x-requested-with': 'vdi',
        'content-type': 'application/octet-stream',
        'content-length': String(10 * MiB),
      },
    });
    req.on('error', () => undefined);
    req.write(randomBytes(MiB));
    // the helper has made its temporary file and is writing into it
    await until(
      async () => (await asDesktop(desktop, 'ls -a Uploads')).includes('.vdi-upload-'),
      15_000,
      'the upload under way',
    );
    req.destroy();
    await until(
      async () => !(await asDesktop(desktop, 'ls -a Uploads')).includes('.vdi-upload-'),
      15_000,
      'the temporary file removed',
    );
    expect(await asDesktop(desktop, 'ls -a Uploads')).not.toContain('cut.bin');
  });

  it('lists ~/Downloads and downloads a file byte-identical', async () => {
    await asDesktop(
      desktop,
      'mkdir -p Downloads && head -c 1234567 /dev/urandom > "Downloads/q3 results.bin" && ln -s /etc/shadow Downloads/shadow',
    );
    const original = fs.readFileSync(path.join(desktop.home, 'Downloads', 'q3 results.bin'));
    await openPanel();
    await filesPanel().getByRole('button', { name: 'Refresh' }).click();
    const link = filesPanel().getByRole('link', { name: 'q3 results.bin' });
    await link.waitFor({ timeout: 15_000 });
    // a symlink is not listed
    expect(await filesPanel().getByRole('link', { name: 'shadow' }).count()).toBe(0);
    const direct = await fetch(
      `${rig.server.url}/api/sessions/${sessionId}/files/downloads/${encodeURIComponent('q3 results.bin')}`,
      { headers: { cookie: rig.admin.cookie } },
    );
    expect(direct.status).toBe(200);
    expect(sha(Buffer.from(await direct.arrayBuffer()))).toBe(sha(original));
    await screenshot(page, 'viewer-files.png');
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    expect(download.suggestedFilename()).toBe('q3 results.bin');
    const got = fs.readFileSync(await download.path());
    expect(got.length).toBe(original.length);
    expect(sha(got)).toBe(sha(original));
  });

  it('does not follow symlinks out of the home, and serves only the owner', async () => {
    const api = rig.admin;
    // ~/Downloads/shadow → /etc/shadow (the desktop cannot read it; root could)
    const dl = await api.get(`/api/sessions/${sessionId}/files/downloads/shadow`);
    expect(dl.status).toBe(404);
    expect(dl.error?.code).toBe('FILES_NOT_A_FILE');
    // ~/Uploads → /tmp of the host
    await asDesktop(desktop, 'mv Uploads Uploads.real && ln -s /tmp Uploads');
    const up = await api.call(
      'POST',
      `/api/sessions/${sessionId}/files/uploads?name=x.txt`,
      undefined,
      {
        'content-type': 'application/octet-stream',
      },
    );
    expect([409, 411]).toContain(up.status);
    const raw = await fetch(
      `${rig.server.url}/api/sessions/${sessionId}/files/uploads?name=escape.txt`,
      {
        method: 'POST',
        headers: {
          cookie: api.cookie,
          'x-requested-with': 'vdi',
          'content-type': 'application/octet-stream',
        },
        body: 'should not land in /tmp',
      },
    );
    expect(raw.status).toBe(409);
    expect(((await raw.json()) as { error: { code: string } }).error.code).toBe(
      'FILES_NOT_A_FOLDER',
    );
    expect(fs.existsSync('/tmp/escape.txt')).toBe(false);
    await asDesktop(desktop, 'rm Uploads && mv Uploads.real Uploads');
    // names with a path are refused
    const bad = await fetch(
      `${rig.server.url}/api/sessions/${sessionId}/files/uploads?name=..%2Fevil`,
      {
        method: 'POST',
        headers: {
          cookie: api.cookie,
          'x-requested-with': 'vdi',
          'content-type': 'application/octet-stream',
        },
        body: 'x',
      },
    );
    expect(bad.status).toBe(400);
    // another user (even with the session's id) gets nothing
    const other = { username: rig.unique('bob'), password: `pw-${rig.token}-secret` };
    expect(
      (await api.post('/api/admin/users', { ...other, role: 'user', displayName: 'Bob' })).status,
    ).toBe(201);
    const bob = await new Api(rig.server.url).login(other.username, other.password);
    expect((await bob.get(`/api/sessions/${sessionId}/files/downloads`)).status).toBe(403);
  });

  it('audits every transfer', () => {
    const actions = rig.auditActions('file.');
    const names = actions.map(
      (a) => `${a.action}:${(JSON.parse(a.detail ?? '{}') as { name?: string }).name}`,
    );
    expect(names).toContain('file.upload:report.bin');
    expect(names).toContain('file.upload:dropped.txt');
    expect(names).toContain('file.upload.failed:toomuch.bin');
    expect(names).toContain('file.download:q3 results.bin');
    expect(names).toContain('file.download.failed:shadow');
  });
});
