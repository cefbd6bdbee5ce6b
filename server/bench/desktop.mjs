// The bench desktop: one TigerVNC Xvnc (unix socket for local RFB clients, plus a TCP port on
// 127.0.0.1 that both websockify and this server's `vnc` provider connect to, so both viewers
// watch the very same X server), openbox, a solid background, and the X tools the workloads
// use (xterm, xdotool, the compiled bench-x clients, xwd for the reference framebuffer).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { until, waitForLine } from './conditions.mjs';
import { tcpListening } from './metrics.mjs';
import { runTool, start, stop } from './processes.mjs';
import { parseXwd } from './xwd.mjs';

/**
 * How the viewers' servers reach the bench Xvnc: `unix` (its `-rfbunixpath`, what this
 * server's own Xvnc desktops use, with websockify's `--unix-target` for noVNC) or `tcp`
 * (127.0.0.1:port, for both).
 * @param {{ rfbPort: number, unixSocket: string }} desk
 * @param {'unix' | 'tcp'} kind
 * @returns {{ kind: 'unix', socket: string } | { kind: 'tcp', port: number }}
 */
export function rfbTarget(desk, kind) {
  return kind === 'tcp' ? { kind, port: desk.rfbPort } : { kind, socket: desk.unixSocket };
}

/** Desktop background: a flat colour, as on most office desktops. */
const ROOT_COLOUR = '#2e5266';
/** Time allowed for Xvnc, the window manager or a window to appear, ms. */
const APPEAR_TIMEOUT_MS = 15_000;

/** A free TCP port on 127.0.0.1 (the kernel picks it; we release it for the real user). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** Compile the bench X clients (x-clients/bench-x.c) into `workDir`; returns the binary path. */
export async function buildXClients(workDir) {
  const src = path.join(import.meta.dirname, 'x-clients', 'bench-x.c');
  const bin = path.join(workDir, 'bench-x');
  await runTool('gcc', ['-O2', '-Wall', '-o', bin, src, '-lX11', '-lXext', '-lm'], {
    timeoutMs: 60_000,
  });
  return bin;
}

/**
 * @param {{ workDir: string, width: number, height: number, benchX: string }} opts
 */
export async function startDesktop({ workDir, width, height, benchX }) {
  const rfbPort = await freePort();
  const unixSocket = path.join(workDir, 'xvnc.sock');
  const home = path.join(workDir, 'home');
  fs.mkdirSync(home, { recursive: true, mode: 0o700 });
  // -displayfd: Xvnc picks a free display itself and writes its number to fd 3 once ready
  const xvnc = start(
    'Xvnc',
    'Xvnc',
    [
      ...['-geometry', `${width}x${height}`, '-depth', '24'],
      ...['-rfbunixpath', unixSocket, '-rfbunixmode', '0600'],
      ...['-rfbport', String(rfbPort), '-localhost', '-interface', '127.0.0.1'],
      ...['-SecurityTypes', 'None', '-AlwaysShared', '-nolisten', 'tcp', '-desktop', 'vdi-bench'],
      // TigerVNC black-lists a host for "Too many security failures" after 5 connections that
      // hang up before finishing the handshake, and this server's `vnc` provider health probe
      // (read the banner, hang up) is one every broker tick: within a minute every client
      // from 127.0.0.1, noVNC's websockify included, would be refused. Loopback only, so off.
      ...['-UseBlacklist', '0'],
      ...['-displayfd', '3'],
    ],
    { extraFds: 1 },
  );
  const displayNumber = await new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(
      () => reject(new Error(`Xvnc did not report its display: ${xvnc.tail()}`)),
      APPEAR_TIMEOUT_MS,
    );
    xvnc.stdio[3].on('data', (d) => {
      got += d.toString();
      if (got.includes('\n')) {
        clearTimeout(timer);
        resolve(Number(got.trim()));
      }
    });
    xvnc.once('exit', (code) => reject(new Error(`Xvnc exited (${code}): ${xvnc.tail()}`)));
  });
  const display = `:${displayNumber}`;
  const env = { ...process.env, DISPLAY: display, HOME: home, LANG: 'C.UTF-8', XAUTHORITY: '' };
  delete env.WAYLAND_DISPLAY;

  const run = (cmd, args, opts = {}) => runTool(cmd, args, { env, ...opts });
  const spawnX = (label, cmd, args) => start(label, cmd, args, { env, cwd: home });

  // from /proc, not by connecting: TigerVNC counts a connection that hangs up before the
  // handshake as a failed authentication (see -UseBlacklist above)
  await until('the RFB port of Xvnc', () => tcpListening(rfbPort), APPEAR_TIMEOUT_MS);
  const wm = spawnX('openbox', 'openbox', []);
  await until(
    'openbox to manage the screen',
    async () => (await run('xprop', ['-root', '_NET_SUPPORTING_WM_CHECK'])).includes('window id'),
    APPEAR_TIMEOUT_MS,
  );
  await run('xsetroot', ['-solid', ROOT_COLOUR]);

  const desktop = {
    display,
    env,
    rfbPort,
    unixSocket,
    width,
    height,
    xvnc,
    wm,
    run,
    spawnX,

    /**
     * An xterm with a unique title, DejaVu Sans Mono (anti-aliased text, as on a modern
     * desktop), at a fixed place; resolves once its window is visible.
     * @param {{ title: string, cols: number, rows: number, x: number, y: number, command: string[] }} o
     */
    async xterm(o) {
      const child = spawnX(`xterm ${o.title}`, 'xterm', [
        ...['-T', o.title, '-geometry', `${o.cols}x${o.rows}+${o.x}+${o.y}`],
        ...['-fa', 'DejaVu Sans Mono', '-fs', '11', '-bg', 'white', '-fg', 'black'],
        ...['-xrm', 'XTerm*allowTitleOps: false', '-xrm', 'XTerm*scrollBar: false'],
        ...['-e', ...o.command],
      ]);
      const wid = await desktop.windowByTitle(o.title, child);
      await desktop.focus(wid);
      return { child, wid };
    },

    /** The window id of a visible window with exactly this title (waits for it). */
    async windowByTitle(title, child) {
      return until(
        `window "${title}" to appear`,
        async () => {
          if (child && child.exitCode !== null)
            throw new Error(`${child.label} exited: ${child.tail()}`);
          const out = await run('xdotool', [
            'search',
            '--onlyvisible',
            '--name',
            `^${title}$`,
          ]).catch(() => '');
          return out.trim().split('\n')[0] || undefined;
        },
        APPEAR_TIMEOUT_MS,
      );
    },

    /** Give a window the keyboard focus (openbox honours _NET_ACTIVE_WINDOW). */
    async focus(wid) {
      await until(
        `window ${wid} to be active`,
        async () => {
          await run('xdotool', ['windowactivate', wid]).catch(() => {}); // asked again until it holds
          return Number((await run('xdotool', ['getactivewindow'])).trim()) === Number(wid);
        },
        APPEAR_TIMEOUT_MS,
        100,
      );
    },

    /** Frame-less geometry of a window: { x, y, w, h } in root coordinates. */
    async geometry(wid) {
      const out = await run('xdotool', ['getwindowgeometry', '--shell', wid]);
      const v = Object.fromEntries(
        out
          .trim()
          .split('\n')
          .map((l) => l.split('=')),
      );
      return { x: Number(v.X), y: Number(v.Y), w: Number(v.WIDTH), h: Number(v.HEIGHT) };
    },

    /** Start a bench-x client; resolves once its window is mapped and drawn. */
    async benchX(label, args) {
      const child = spawnX(label, benchX, args);
      const [, wid] = await waitForLine(child, /^ready (0x[0-9a-f]+)$/, APPEAR_TIMEOUT_MS);
      return { child, wid };
    },

    /** Stop a window's process and wait until the window is gone from the screen. */
    async close(win) {
      await stop(win.child);
      await until(
        'a closed window to disappear',
        async () => {
          try {
            await run('xdotool', ['getwindowname', win.wid]);
            return false;
          } catch {
            return true; // BadWindow: it is gone
          }
        },
        APPEAR_TIMEOUT_MS,
      );
    },

    /** Where the pointer is, root coordinates. */
    async pointer() {
      const out = await run('xdotool', ['getmouselocation', '--shell']);
      const v = Object.fromEntries(
        out
          .trim()
          .split('\n')
          .map((l) => l.split('=')),
      );
      return { x: Number(v.X), y: Number(v.Y) };
    },

    /** The desktop's own framebuffer (xwd of the root window) as RGBA. */
    async capture() {
      const raw = await run('xwd', ['-root', '-silent'], { encoding: 'buffer', timeoutMs: 20_000 });
      return parseXwd(raw);
    },
  };
  return desktop;
}
