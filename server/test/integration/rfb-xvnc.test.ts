/**
 * The RFB client against a real TigerVNC Xvnc on a private unix socket (no TCP). Each
 * check waits on a condition with a deadline. X clients run asynchronously so the event
 * loop keeps reading the RFB socket meanwhile.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RfbClient } from '../../src/rfb/client.js';
import type { RfbClientOptions, RfbCloseEvent, ServerInfo } from '../../src/rfb/client-api.js';
import type { ExtendedDesktopSizeEvent } from '../../src/rfb/framebuffer-size.js';
import { FramebufferModel } from '../unit/rfb/helpers/sinks.js';

const run = promisify(execFile);

/** How long any single condition may take to become true, ms. */
const WAIT_MS = 15_000;
const WIDTH = 640;
const HEIGHT = 480;

/** The unit tests' framebuffer model, also keeping the sizes it was given and a colour check. */
class TestFramebuffer extends FramebufferModel {
  sizes: [number, number][] = [];

  override resize(width: number, height: number): void {
    super.resize(width, height);
    this.sizes.push([width, height]);
  }

  everyPixelIs(rgb: [number, number, number]): boolean {
    for (let i = 0; i < this.width * this.height; i++) {
      if (
        this.data[i * 4] !== rgb[0] ||
        this.data[i * 4 + 1] !== rgb[1] ||
        this.data[i * 4 + 2] !== rgb[2]
      )
        return false;
    }
    return true;
  }
}

async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Xvnc {
  display: number;
  socketPath: string;
  proc: ChildProcess;
  env: NodeJS.ProcessEnv;
}

/**
 * Start Xvnc on a free display. `-displayfd` lets the X server pick one itself (it checks
 * /tmp/.X<n>-lock and the X11 sockets atomically, which a check from here could not do
 * while other test files start their own servers) and report it once it is listening.
 */
async function startXvnc(dir: string, name: string, extraArgs: string[]): Promise<Xvnc> {
  const socketPath = path.join(dir, `${name}.sock`);
  const args = [
    '-displayfd',
    '3',
    '-geometry',
    `${WIDTH}x${HEIGHT}`,
    '-depth',
    '24',
    '-rfbunixpath',
    socketPath,
    '-rfbport',
    '-1', // no RFB TCP listener
    '-nolisten',
    'tcp', // no X11 TCP listener
    '-desktop',
    `rfb-test-${name}`,
    ...extraArgs,
  ];
  const proc = spawn('/usr/bin/Xvnc', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let log = '';
  let displayOut = '';
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  (proc.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (displayOut += d.toString()));
  let exited = false;
  proc.once('exit', () => (exited = true));
  try {
    await waitFor(
      () => exited || (/^\d+\n/.test(displayOut) && existsSync(socketPath)),
      'Xvnc to listen',
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${String(err)}\n${log}`, { cause: err });
  }
  if (exited) throw new Error(`Xvnc exited at start:\n${log}`);
  const display = Number.parseInt(displayOut, 10);
  return { display, socketPath, proc, env: { ...process.env, DISPLAY: `:${display}` } };
}

async function stopXvnc(x: Xvnc | undefined): Promise<void> {
  if (x === undefined || x.proc.exitCode !== null) return;
  const gone = new Promise((r) => x.proc.once('exit', r));
  x.proc.kill('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
  if (x.proc.exitCode === null) x.proc.kill('SIGKILL');
}

/** TCP ports a process listens on, from its socket inodes and /proc/net/tcp{,6}. */
function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // fd closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [, local, , state] = cols;
      const LISTEN = '0A';
      if (cols.length > 9 && state === LISTEN && inodes.has(cols[9] as string)) {
        ports.push(parseInt((local as string).split(':')[1] as string, 16));
      }
    }
  }
  return ports;
}

const dir = mkdtempSync(path.join(tmpdir(), 'rfb-xvnc-'));
const openClients: RfbClient[] = [];
const children: ChildProcess[] = [];

function connectClient(x: Xvnc, options: Partial<RfbClientOptions> = {}) {
  const fb = new TestFramebuffer();
  const client = new RfbClient({
    endpoint: { kind: 'unix', path: x.socketPath },
    sink: fb,
    ...options,
  });
  openClients.push(client);
  const closes: RfbCloseEvent[] = [];
  const sizes: ExtendedDesktopSizeEvent[] = [];
  client.on('close', (e) => closes.push(e));
  client.on('error', () => undefined); // reported through close as well
  client.on('desktop-size', (e) => sizes.push(e));
  return { client, fb, closes, sizes, ready: client.connect() };
}

/** Type a string as key presses and releases (printable ASCII and '\n'). */
function typeText(client: RfbClient, text: string): void {
  for (const ch of text) {
    const keysym = ch === '\n' ? 0xff0d : (ch.codePointAt(0) as number);
    client.keyEvent(keysym, true);
    client.keyEvent(keysym, false);
  }
}

afterAll(async () => {
  for (const c of openClients) c.close('test over');
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all([stopXvnc(plain), stopXvnc(secured)]);
  rmSync(dir, { recursive: true, force: true });
});

let plain: Xvnc | undefined;
let secured: Xvnc | undefined;

describe('Xvnc with security None', () => {
  let x: Xvnc;
  let main: ReturnType<typeof connectClient>;
  let info: ServerInfo;

  beforeAll(async () => {
    x = plain = await startXvnc(dir, 'plain', ['-SecurityTypes', 'None']);
    main = connectClient(x);
    info = await main.ready;
  });

  it('listens on the unix socket only, no TCP port', () => {
    expect(listeningTcpPorts(x.proc.pid as number)).toEqual([]);
  });

  it('handshakes and receives the first full frame', async () => {
    expect(info).toMatchObject({
      width: WIDTH,
      height: HEIGHT,
      name: 'rfb-test-plain',
      protocolVersion: '3.8',
      security: 'none',
      continuousUpdates: true, // TigerVNC answers -313
      fence: true,
      extendedDesktopSize: true,
    });
    expect(main.fb.sizes[0]).toEqual([WIDTH, HEIGHT]);
    await waitFor(() => main.fb.fullyCovered(), 'full coverage');
  });

  it('shows an xsetroot colour change as damage with R=255, G=128, B=0', async () => {
    main.fb.damage = [];
    await run('xsetroot', ['-solid', '#ff8000'], { env: x.env });
    await waitFor(() => main.fb.everyPixelIs([255, 128, 0]), 'orange root window');
    expect(main.fb.damage.reduce((area, d) => area + d.w * d.h, 0)).toBeGreaterThanOrEqual(
      WIDTH * HEIGHT,
    );
    expect(main.fb.pixel(0, 0)).toEqual([255, 128, 0]);
    expect(main.fb.pixel(WIDTH - 1, HEIGHT - 1)).toEqual([255, 128, 0]);
  });

  it('moves the X pointer with pointerEvent', async () => {
    main.client.pointerEvent(123, 45, 0);
    await waitFor(async () => {
      const { stdout } = await run('xdotool', ['getmouselocation'], { env: x.env });
      return /^x:123 y:45 /.test(stdout);
    }, 'pointer at 123,45');
  });

  it('types into an xterm with keyEvent, and the damage stays inside the xterm', async () => {
    const out = path.join(dir, 'typed.txt');
    writeFileSync(out, '');
    const term = spawn(
      'xterm',
      ['-geometry', '30x4+200+150', '-title', 'rfbtest', '-e', 'sh', '-c', `cat > ${out}`],
      {
        env: x.env,
        stdio: 'ignore',
      },
    );
    children.push(term);
    let geo = { x: 0, y: 0, w: 0, h: 0, border: 0 };
    await waitFor(async () => {
      try {
        const { stdout } = await run('xwininfo', ['-name', 'rfbtest'], { env: x.env });
        const num = (label: string): number =>
          Number(new RegExp(`${label}:\\s+(-?\\d+)`).exec(stdout)?.[1] ?? NaN);
        geo = {
          x: num('Absolute upper-left X'),
          y: num('Absolute upper-left Y'),
          w: num('Width'),
          h: num('Height'),
          border: num('Border width'),
        };
        return /IsViewable/.test(stdout);
      } catch {
        return false;
      }
    }, 'xterm mapped');
    // without a window manager, focus follows the pointer: put it inside the xterm
    main.client.pointerEvent(geo.x + 10, geo.y + 10, 0);
    // let the xterm's first paint arrive, then watch only what typing changes
    const inside = (d: { x: number; y: number; w: number; h: number }): boolean =>
      d.x >= geo.x - geo.border &&
      d.y >= geo.y - geo.border &&
      d.x + d.w <= geo.x + geo.w + geo.border &&
      d.y + d.h <= geo.y + geo.h + geo.border;
    await waitFor(() => main.fb.damage.some(inside), 'xterm painted');
    main.fb.damage = [];

    typeText(main.client, 'hello rfb\n');
    await waitFor(() => readFileSync(out, 'utf8') === 'hello rfb\n', 'typed text in the file');
    await waitFor(() => main.fb.damage.length > 0, 'damage from typing');
    for (const d of main.fb.damage)
      expect(inside(d), `damage ${JSON.stringify(d)} inside ${JSON.stringify(geo)}`).toBe(true);
    term.kill();
  });

  it('receives ServerCutText when the X clipboard changes', async () => {
    // UTF-8 in X; RFB carries it as Latin-1
    const child = execFile('sh', ['-c', 'printf "from X, déjà vu" | xclip -selection clipboard'], {
      env: x.env,
    });
    children.push(child);
    await waitFor(
      () => main.fb.cutTexts.includes('from X, déjà vu'),
      'ServerCutText "from X, déjà vu"',
    );
  });

  it('sets the X clipboard with clientCutText', async () => {
    main.client.clientCutText('from RFB, café');
    await waitFor(async () => {
      try {
        const { stdout } = await run('xclip', ['-o', '-selection', 'clipboard'], {
          env: x.env,
          timeout: 5000,
        });
        return stdout === 'from RFB, café';
      } catch {
        return false;
      }
    }, 'X clipboard set');
  });

  it('requestFullUpdate() re-sends the whole screen', async () => {
    main.fb.damage = [];
    expect(main.client.requestFullUpdate()).toBe(true);
    await waitFor(() => {
      const area = main.fb.damage.reduce((a, d) => a + d.w * d.h, 0);
      return area >= WIDTH * HEIGHT;
    }, 'full-screen damage');
  });

  it('works without continuous updates (one request in flight)', async () => {
    const second = connectClient(x, { continuousUpdates: false });
    const secondInfo = await second.ready;
    expect(secondInfo.continuousUpdates).toBe(false);
    expect(second.fb.fullyCovered()).toBe(true);
    await run('xsetroot', ['-solid', '#0040c0'], { env: x.env });
    await waitFor(() => second.fb.pixel(5, 5).join() === '0,64,192', 'blue root via requests');
    await waitFor(
      () => main.fb.pixel(5, 5).join() === '0,64,192',
      'blue root via continuous updates',
    );
    second.client.close('done');
    expect(second.closes).toEqual([{ reason: 'done' }]);
  });

  it('resizes the desktop with setDesktopSize; another viewer follows', async () => {
    const other = connectClient(x);
    await other.ready;
    expect(main.client.setDesktopSize(800, 600)).toBe(true);
    await waitFor(
      () => main.sizes.some((e) => e.reason === 'this-client' && e.status === 'ok'),
      'our resize result',
    );
    await waitFor(() => main.fb.width === 800 && main.fb.height === 600, 'main resized');
    await waitFor(() => other.sizes.some((e) => e.reason === 'other-client'), 'other client told');
    await waitFor(
      () => other.fb.width === 800 && other.fb.fullyCovered(),
      'other client resized and repainted',
    );
    await waitFor(() => main.fb.fullyCovered(), 'main repainted');
    expect(main.client.info).toMatchObject({ width: 800, height: 600 });
    other.client.close('done');
    expect(main.closes).toEqual([]);
  });
});

describe('Xvnc with VNC authentication', () => {
  let x: Xvnc;

  beforeAll(async () => {
    const passwordFile = path.join(dir, 'passwd');
    const { stdout } = await run('sh', ['-c', `printf 'sesame' | vncpasswd -f`], {
      encoding: 'buffer',
    });
    writeFileSync(passwordFile, stdout, { mode: 0o600 });
    x = secured = await startXvnc(dir, 'secured', [
      '-SecurityTypes',
      'VncAuth',
      '-PasswordFile',
      passwordFile,
    ]);
  });

  it('connects with the right password', async () => {
    const c = connectClient(x, {
      endpoint: { kind: 'unix', path: x.socketPath, password: 'sesame' },
    });
    const info = await c.ready;
    expect(info.security).toBe('vnc-auth');
    await waitFor(() => c.fb.fullyCovered(), 'first frame');
    c.client.close();
  });

  it('fails without a password, naming the cause', async () => {
    const c = connectClient(x);
    await expect(c.ready).rejects.toMatchObject({ code: 'password-required' });
  });

  it('fails with a wrong password and the server reason', async () => {
    const c = connectClient(x, {
      endpoint: { kind: 'unix', path: x.socketPath, password: 'wrong' },
    });
    await expect(c.ready).rejects.toMatchObject({ code: 'auth-failed' });
    expect(c.closes[0]?.reason).toMatch(/VNC authentication failed: .+/);
  });
});
