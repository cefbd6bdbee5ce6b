// The workloads, replayed identically for each viewer. Each one:
//   setup(desk)      opens its windows (deterministic content) and waits until they show;
//   start(s, secs)   starts changing the screen for about `secs` seconds (drivers are sized
//                    to the phase and end by themselves, never killed mid-keystroke);
//   pause(s)         waits for the driver to finish / freezes the animation, so the screen
//                    settles (returns facts about the source, e.g. frames the X client drew);
//   teardown(s)      closes its windows.
// Typing, scrolling and dragging are driven with xdotool (XTEST, as a user would); the
// animations are bench-x clients (x-clients/bench-x.c).
import fs from 'node:fs';
import path from 'node:path';
import { until, waitForLine } from './conditions.mjs';
import { start, stop } from './processes.mjs';

/** Size of the time code drawn by `bench-x clock` (x-clients/bench-x.c): 24 x 2 cells of 16 px. */
export const TIME_CODE_SIZE = { w: 24 * 16, h: 2 * 16 };
/** Where the time code goes: top right, clear of every workload's windows. */
export function timeCodeAt(desk) {
  return { x: desk.width - TIME_CODE_SIZE.w - 16, y: 16 };
}

/** Typing speed, characters per second (xdotool type --delay is per character). */
const TYPING_CPS = 10;
/** Scrolling speed, lines per second (one Down key in `less` = one line). */
const SCROLL_LPS = 25;
/** Pointer moves per second while dragging a window (a 60 Hz mouse). */
const DRAG_HZ = 60;
/** Drag path: an ellipse of these radii (px), one lap in this many seconds. */
const DRAG_RADIUS = { x: 350, y: 200 };
const DRAG_LAP_SEC = 4;
/** Slack for a driver to finish after its nominal duration, ms (xdotool adds a little per event). */
const DRIVER_SLACK_MS = 8_000;

// ---- deterministic content ----

/** A small seeded PRNG (mulberry32), so generated text is the same on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'the desktop stream sends damage as rectangles viewer frame latency pixels socket session gateway broker ' +
  'pool tile codec lossless refresh quality bandwidth window cursor keyboard pointer scroll copy region ' +
  'update encoder decoder canvas browser server client request answer timeout reconnect display'
).split(' ');

/** A long log-like text file for scrolling (20,000 lines of varied length and layout). */
function writeScrollFile(file) {
  const rnd = prng(42);
  const levels = ['INFO ', 'DEBUG', 'WARN ', 'ERROR'];
  const lines = [];
  for (let i = 1; i <= 20_000; i++) {
    const n = 3 + Math.floor(rnd() * 14);
    const words = Array.from({ length: n }, () => WORDS[Math.floor(rnd() * WORDS.length)]);
    const ms = String(Math.floor(rnd() * 1000)).padStart(3, '0');
    const lvl = levels[Math.floor(rnd() ** 3 * levels.length)];
    lines.push(
      `${String(i).padStart(6)}  12:${String(Math.floor(i / 600) % 60).padStart(2, '0')}:${String(Math.floor(i / 10) % 60).padStart(2, '0')}.${ms} ${lvl} ${words.join(' ')}`,
    );
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

/** Text typed in the typing workload: sentences, a newline now and then. */
function typingText(chars, seed) {
  const rnd = prng(seed);
  let s = '';
  let line = 0;
  while (s.length < chars) {
    const w = WORDS[Math.floor(rnd() * WORDS.length)];
    s += w;
    line += w.length + 1;
    if (line > 60 + rnd() * 15) {
      s += '\n';
      line = 0;
    } else s += ' ';
  }
  return s.slice(0, chars);
}

/** A coloured directory-listing-like text (ANSI colours) for the window that gets dragged. */
function writeListingFile(file) {
  const rnd = prng(7);
  const colours = ['\x1b[0m', '\x1b[1;34m', '\x1b[1;32m', '\x1b[0;36m', '\x1b[1;35m'];
  const lines = ['total 1234'];
  for (let i = 0; i < 22; i++) {
    const c = colours[Math.floor(rnd() * colours.length)];
    const size = String(Math.floor(rnd() * 99999)).padStart(6);
    const name = `${WORDS[Math.floor(rnd() * WORDS.length)]}-${WORDS[Math.floor(rnd() * WORDS.length)]}.${['ts', 'md', 'json', 'png'][i % 4]}`;
    lines.push(
      `-rw-r--r-- 1 vdi vdi ${size} May  1 12:${String(i).padStart(2, '0')} ${c}${name}\x1b[0m`,
    );
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

// ---- drivers ----

/** Run xdotool with a command chain; resolves the child (it ends by itself). */
function xdotool(desk, label, args) {
  return start(label, 'xdotool', args, { env: desk.env });
}

/** Wait for a driver to end by itself (it is sized to the phase), then make sure it is gone. */
async function finish(child) {
  if (!child) return;
  if (child.exitCode === null && child.signalCode === null) {
    await Promise.race([
      new Promise((r) => child.once('exit', r)),
      new Promise((r) => setTimeout(r, DRIVER_SLACK_MS)),
    ]);
  }
  await stop(child);
}

/** xdotool arguments for an Alt+drag (openbox: Alt + left button moves a window) along an ellipse. */
function dragArgs(from, seconds) {
  const moves = Math.round(seconds * DRAG_HZ);
  const centre = { x: from.x - DRAG_RADIUS.x, y: from.y };
  const args = ['mousemove', String(from.x), String(from.y), 'keydown', 'alt', 'mousedown', '1'];
  const step = (2 * Math.PI) / (DRAG_LAP_SEC * DRAG_HZ);
  for (let i = 1; i <= moves; i++) {
    const x = Math.round(centre.x + DRAG_RADIUS.x * Math.cos(i * step));
    const y = Math.round(centre.y + DRAG_RADIUS.y * Math.sin(i * step));
    args.push('mousemove', String(x), String(y), 'sleep', (1 / DRAG_HZ).toFixed(4));
  }
  args.push('mouseup', '1', 'keyup', 'alt');
  return args;
}

// ---- the workloads ----

/** @param {{ workDir: string }} env */
export function workloads({ workDir }) {
  const scrollFile = path.join(workDir, 'scroll.log');
  const listingFile = path.join(workDir, 'listing.txt');
  writeScrollFile(scrollFile);
  writeListingFile(listingFile);

  const animation = (id, title, rect) => ({
    id,
    title,
    async setup(desk) {
      const r = rect(desk);
      const win = await desk.benchX(`anim ${id}`, [
        'anim',
        String(r.x),
        String(r.y),
        String(r.w),
        String(r.h),
        '30',
      ]);
      return { win, roi: r };
    },
    async start(s) {
      s.startedAt = Date.now();
      s.win.child.kill('SIGUSR2');
    },
    async pause(s) {
      const line = waitForLine(s.win.child, /^paused frames=(\d+)$/, 10_000);
      s.win.child.kill('SIGUSR1');
      const [, frames] = await line;
      const secs = (Date.now() - s.startedAt) / 1000;
      return { sourceFrames: Number(frames), sourceFps: Number(frames) / secs };
    },
    async teardown(desk, s) {
      await desk.close(s.win);
    },
  });

  return [
    {
      id: 'idle',
      title: 'idle desktop (a terminal, nothing changes)',
      async setup(desk) {
        const win = await desk.xterm({
          title: 'bench-idle',
          cols: 90,
          rows: 26,
          x: 120,
          y: 140,
          command: ['sh', '-c', `cat '${listingFile}'; exec cat >/dev/null`],
        });
        return { win, roi: { x: 0, y: 0, w: desk.width, h: desk.height } };
      },
      async start() {},
      async pause() {
        return {};
      },
      async teardown(desk, s) {
        await desk.close(s.win);
      },
    },
    {
      id: 'typing',
      title: `typing into a terminal (${TYPING_CPS} chars/s)`,
      async setup(desk) {
        const win = await desk.xterm({
          title: 'bench-typing',
          cols: 100,
          rows: 30,
          x: 120,
          y: 140,
          command: ['sh', '-c', 'exec cat >/dev/null'],
        });
        return { win, roi: await desk.geometry(win.wid), seed: 1 };
      },
      async start(s, secs, desk) {
        await desk.focus(s.win.wid);
        const text = typingText(Math.round(secs * TYPING_CPS), s.seed++);
        s.driver = xdotool(desk, 'xdotool type', [
          'type',
          '--delay',
          String(1000 / TYPING_CPS),
          text,
        ]);
      },
      async pause(s) {
        await finish(s.driver);
        return {};
      },
      async teardown(desk, s) {
        await desk.close(s.win);
      },
    },
    {
      id: 'scrolling',
      title: `scrolling a long text file in less (${SCROLL_LPS} lines/s)`,
      async setup(desk) {
        const win = await desk.xterm({
          title: 'bench-scrolling',
          cols: 140,
          rows: 45,
          x: 60,
          y: 60,
          command: ['less', '-S', scrollFile],
        });
        return { win, roi: await desk.geometry(win.wid) };
      },
      async start(s, secs, desk) {
        await desk.focus(s.win.wid);
        const keys = Array(Math.round(secs * SCROLL_LPS)).fill('Down');
        s.driver = xdotool(desk, 'xdotool key', [
          'key',
          '--delay',
          String(1000 / SCROLL_LPS),
          ...keys,
        ]);
      },
      async pause(s) {
        await finish(s.driver);
        return {};
      },
      async teardown(desk, s) {
        await desk.close(s.win);
      },
    },
    {
      id: 'drag',
      title: `dragging a terminal window around (${DRAG_HZ} Hz pointer)`,
      async setup(desk) {
        const win = await desk.xterm({
          title: 'bench-drag',
          cols: 80,
          rows: 24,
          x: 800,
          y: 300,
          command: ['sh', '-c', `cat '${listingFile}'; exec cat >/dev/null`],
        });
        const home = await desk.geometry(win.wid);
        return { win, home, roi: { x: 0, y: 0, w: desk.width, h: desk.height } };
      },
      async start(s, secs, desk) {
        // grab the window 200,150 px inside its top-left corner
        const from = { x: s.home.x + 200, y: s.home.y + 150 };
        s.driver = xdotool(desk, 'xdotool drag', dragArgs(from, secs));
        s.desk = desk;
      },
      async pause(s) {
        await finish(s.driver);
        const desk = s.desk;
        await desk.run('xdotool', ['mouseup', '1', 'keyup', 'alt']); // in case the driver did not get there
        // back home, so the next phase and the next viewer start from the same place
        await desk.run('xdotool', [
          'windowmove',
          '--sync',
          s.win.wid,
          String(s.home.x),
          String(s.home.y),
        ]);
        await until(
          'the dragged window to be back home',
          async () => {
            const g = await desk.geometry(s.win.wid);
            return Math.abs(g.x - s.home.x) <= 40 && Math.abs(g.y - s.home.y) <= 40;
          },
          10_000,
        );
        return {};
      },
      async teardown(desk, s) {
        await desk.close(s.win);
      },
    },
    animation('anim-640', 'photo-like animation, 640x480 at 30 fps', (desk) => ({
      x: 1100,
      y: 400,
      w: 640,
      h: 480,
    })),
    animation('anim-1080p', 'photo-like animation, full screen 1920x1080 at 30 fps', (desk) => ({
      x: 0,
      y: 0,
      w: desk.width,
      h: desk.height,
    })),
  ];
}
