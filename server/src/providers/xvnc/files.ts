/**
 * File transfer with an X desktop's home: uploads land in `~/Uploads`, downloads come from
 * `~/Downloads` (issue 13).
 *
 * Every file operation runs in a short helper process as the desktop's own account (never as
 * root), so it can do nothing the desktop could not do itself: the files it makes are the
 * desktop's, its writes count against the home's disk quota, and it cannot read what the
 * desktop cannot. The helper reaches the home only through a directory descriptor the server
 * opens (fd 3; the home's host path is under the server's 0700 data directory, which the
 * desktop account cannot walk), and it walks one component at a time with O_NOFOLLOW through
 * `/proc/self/fd/N/<name>`: a symlink the desktop planted anywhere on the way (`~/Uploads` →
 * `/etc`, `~/Downloads/x` → `/root/.ssh/id_rsa`) fails the call instead of leaving the home.
 *
 * An upload is written to a hidden temporary name and linked to its final name only once
 * every byte has arrived; on any failure (disk full, size exceeded, the browser gone) the
 * temporary file is removed, so nothing partial is left.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import type { DesktopAccount } from '../sandbox/accounts.js';
import { asDesktopAccount } from '../sandbox/launch.js';
import { ProviderError, type DesktopFiles, type DesktopFileEntry } from '../types.js';
import { DESKTOP_PATH } from './session.js';

/** the folders of the home that transfers use */
export const UPLOADS_DIR = 'Uploads';
export const DOWNLOADS_DIR = 'Downloads';
/** longest file name, bytes (ext4's limit) */
const MAX_NAME_BYTES = 255;
/** how long listing a folder may take, ms */
const LIST_TIMEOUT_MS = 15_000;
/** most entries a listing returns (a folder of a million files must not exhaust the server) */
const MAX_LIST_ENTRIES = 5000;
/** bound on what the helper writes besides file bytes (listing JSON, errors), bytes */
const MAX_HELPER_TEXT = 4 * 1024 * 1024;

/**
 * The helper, run with `node -e` as the desktop's account (CommonJS; argv: op, name, size).
 * Exit 0 with its answer on stdout, or exit 2 with `{code, message}` on stderr.
 */
const HELPER = String.raw`
const fs = require('fs');
const crypto = require('crypto');
const C = fs.constants;
const [op, name, sizeArg] = process.argv.slice(1);
const at = (fd, n) => '/proc/self/fd/' + fd + '/' + n;
function fail(code, message) {
  process.stderr.write(JSON.stringify({ code, message }) + '\n');
  process.exit(2);
}
function openDir(n, create) {
  const flags = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
  try {
    return fs.openSync(at(3, n), flags);
  } catch (e) {
    if (e.code === 'ENOENT' && create) {
      try { fs.mkdirSync(at(3, n), 0o755); } catch (e2) { if (e2.code !== 'EEXIST') throw e2; }
      return fs.openSync(at(3, n), flags);
    }
    if (e.code === 'ENOENT') return -1;
    if (e.code === 'ELOOP' || e.code === 'ENOTDIR')
      fail('FILES_NOT_A_FOLDER', '~/' + n + ' is a link or not a folder: it is not used for transfers');
    throw e;
  }
}
function full(e) { return e && (e.code === 'ENOSPC' || e.code === 'EDQUOT'); }
try {
  if (op === 'list') {
    const d = openDir(${JSON.stringify(DOWNLOADS_DIR)}, false);
    const out = [];
    if (d >= 0) {
      for (const n of fs.readdirSync('/proc/self/fd/' + d)) {
        if (out.length >= ${MAX_LIST_ENTRIES}) break;
        let st;
        try { st = fs.lstatSync(at(d, n)); } catch { continue; }
        if (st.isFile()) out.push({ name: n, size: st.size, modified: st.mtime.toISOString() });
      }
    }
    process.stdout.write(JSON.stringify(out));
  } else if (op === 'get') {
    const d = openDir(${JSON.stringify(DOWNLOADS_DIR)}, false);
    if (d < 0) fail('FILES_NOT_FOUND', 'there is no ~/Downloads folder');
    let fd;
    try {
      fd = fs.openSync(at(d, name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (e) {
      if (e.code === 'ENOENT') fail('FILES_NOT_FOUND', 'no such file in ~/Downloads');
      if (e.code === 'ELOOP') fail('FILES_NOT_A_FILE', 'that is a link, not a file');
      if (e.code === 'EACCES') fail('FILES_NOT_READABLE', 'the desktop cannot read that file');
      throw e;
    }
    const st = fs.fstatSync(fd);
    if (!st.isFile()) fail('FILES_NOT_A_FILE', 'that is not a regular file');
    process.stdout.write(JSON.stringify({ size: st.size }) + '\n');
    fs.createReadStream('', { fd }).pipe(process.stdout);
  } else if (op === 'put') {
    const expected = Number(sizeArg);
    const d = openDir(${JSON.stringify(UPLOADS_DIR)}, true);
    const tmp = '.vdi-upload-' + crypto.randomBytes(8).toString('hex');
    let fd = fs.openSync(at(d, tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644);
    let got = 0;
    const abort = (code, message) => {
      try { if (fd >= 0) fs.closeSync(fd); } catch {}
      fd = -1;
      try { fs.unlinkSync(at(d, tmp)); } catch {}
      fail(code, message);
    };
    process.on('SIGTERM', () => abort('FILES_ABORTED', 'the upload was cancelled'));
    process.stdin.on('data', (chunk) => {
      got += chunk.length;
      if (got > expected) abort('FILES_INCOMPLETE', 'more bytes arrived than announced');
      try {
        for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk, off);
      } catch (e) {
        if (full(e)) abort('FILES_DISK_FULL', "the desktop's disk is full");
        abort('FILES_WRITE_FAILED', 'writing failed: ' + e.code);
      }
    });
    process.stdin.on('end', () => {
      if (got !== expected) abort('FILES_INCOMPLETE', 'the upload ended after ' + got + ' of ' + expected + ' bytes');
      try { fs.fsyncSync(fd); fs.closeSync(fd); fd = -1; } catch (e) {
        if (full(e)) abort('FILES_DISK_FULL', "the desktop's disk is full");
        abort('FILES_WRITE_FAILED', 'writing failed: ' + e.code);
      }
      const dot = name.lastIndexOf('.');
      const stem = dot > 0 ? name.slice(0, dot) : name;
      const ext = dot > 0 ? name.slice(dot) : '';
      for (let i = 0; i < 1000; i++) {
        const final = i === 0 ? name : stem + ' (' + i + ')' + ext;
        try {
          fs.linkSync(at(d, tmp), at(d, final));
          fs.unlinkSync(at(d, tmp));
          process.stdout.write(JSON.stringify({ name: final, bytes: got }));
          return;
        } catch (e) {
          if (e.code === 'EEXIST' || e.code === 'ENAMETOOLONG') continue;
          if (full(e)) abort('FILES_DISK_FULL', "the desktop's disk is full");
          abort('FILES_WRITE_FAILED', 'naming the file failed: ' + e.code);
        }
      }
      abort('FILES_WRITE_FAILED', 'too many files of that name in ~/Uploads');
    });
  } else fail('FILES_BAD_OP', 'unknown operation');
} catch (e) {
  if (full(e)) fail('FILES_DISK_FULL', "the desktop's disk is full");
  fail('FILES_FAILED', 'file operation failed: ' + (e.code || e.message));
}
`;

/** A file name a transfer may use: one component, no control characters. */
export function checkFileName(name: string): string {
  if (
    name.length === 0 ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f]/.test(name) ||
    Buffer.byteLength(name) > MAX_NAME_BYTES
  )
    throw new ProviderError(
      'FILES_BAD_NAME',
      'a file name is one path component of at most 255 bytes, without "/" or control characters',
    );
  return name;
}

export interface FilesOwner {
  /** the desktop's home on the host */
  home: string;
  /** the desktop's account; undefined when desktops run as the server's own account */
  account: DesktopAccount | undefined;
}

/** File transfer with one desktop's home, each call a helper process as the desktop. */
export class XvncFiles implements DesktopFiles {
  constructor(private readonly owner: FilesOwner) {}

  private run(args: string[]): ChildProcessWithoutNullStreams {
    // O_NOFOLLOW: the home itself is root's to place (its parent is the server's own folder)
    const homeFd = fs.openSync(
      this.owner.home,
      fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW,
    );
    try {
      const a = this.owner.account;
      const node = [process.execPath, '-e', HELPER, ...args];
      const argv = a ? asDesktopAccount(a, node) : node;
      return spawn(argv[0]!, argv.slice(1), {
        cwd: '/',
        env: { PATH: DESKTOP_PATH, LANG: 'C.UTF-8' },
        stdio: ['pipe', 'pipe', 'pipe', homeFd],
      }) as unknown as ChildProcessWithoutNullStreams;
    } finally {
      fs.closeSync(homeFd);
    }
  }

  async list(): Promise<DesktopFileEntry[]> {
    const child = this.run(['list']);
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), LIST_TIMEOUT_MS);
    try {
      const { out } = await finish(child);
      return JSON.parse(out.toString('utf8')) as DesktopFileEntry[];
    } finally {
      clearTimeout(timer);
    }
  }

  async download(name: string): Promise<{ size: number; body: Readable; cancel(): void }> {
    checkFileName(name);
    const child = this.run(['get', name]);
    child.stdin.end();
    const errText = collect(child.stderr);
    const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    // the first line is the size; then the file's bytes
    const header = await new Promise<{ size: number; rest: Buffer } | undefined>((resolve) => {
      let buf = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const nl = buf.indexOf(10);
        if (nl >= 0) {
          child.stdout.off('data', onData);
          child.stdout.pause();
          try {
            const { size } = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { size: number };
            resolve({ size, rest: buf.subarray(nl + 1) });
          } catch {
            resolve(undefined);
          }
        } else if (buf.length > 4096) resolve(undefined);
      };
      child.stdout.on('data', onData);
      child.stdout.once('end', () => resolve(undefined));
    });
    if (!header) {
      await exited;
      throw helperError(await errText, 'the desktop did not give the file');
    }
    if (header.rest.length > 0) child.stdout.unshift(header.rest);
    return {
      size: header.size,
      body: child.stdout,
      cancel: () => child.kill('SIGKILL'),
    };
  }

  async upload(
    name: string,
    size: number,
    body: Readable,
    onAbort: (cancel: () => void) => void,
  ): Promise<{ name: string; bytes: number }> {
    checkFileName(name);
    const child = this.run(['put', name, String(size)]);
    onAbort(() => child.kill('SIGTERM'));
    body.pipe(child.stdin);
    // the helper exits early on a full disk: stop feeding it, and do not fail on EPIPE
    child.stdin.on('error', () => undefined);
    child.once('close', () => body.unpipe(child.stdin));
    const { out } = await finish(child);
    return JSON.parse(out.toString('utf8')) as { name: string; bytes: number };
  }
}

/** Collects a stream's text, up to MAX_HELPER_TEXT bytes. */
function collect(s: Readable): Promise<string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    s.on('data', (c: Buffer) => {
      if (n < MAX_HELPER_TEXT) parts.push(c);
      n += c.length;
    });
    s.once('close', () => resolve(Buffer.concat(parts).toString('utf8')));
    s.once('end', () => resolve(Buffer.concat(parts).toString('utf8')));
  });
}

/** Waits for a helper to exit: its stdout, or its error as a ProviderError. */
async function finish(child: ChildProcessWithoutNullStreams): Promise<{ out: Buffer }> {
  const parts: Buffer[] = [];
  let n = 0;
  child.stdout.on('data', (c: Buffer) => {
    n += c.length;
    if (n <= MAX_HELPER_TEXT) parts.push(c);
  });
  const err = collect(child.stderr);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  if (code === 0 && n <= MAX_HELPER_TEXT) return { out: Buffer.concat(parts) };
  throw helperError(await err, `the file helper failed (exit ${code})`);
}

function helperError(stderr: string, fallback: string): ProviderError {
  const last = stderr.trim().split('\n').pop() ?? '';
  try {
    const e = JSON.parse(last) as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && typeof e.message === 'string')
      return new ProviderError(e.code, e.message);
  } catch {
    /* not the helper's own error line */
  }
  return new ProviderError('FILES_FAILED', `${fallback}${last ? `: ${last.slice(0, 300)}` : ''}`);
}
