// Injected into each viewer page before the page's own scripts (Playwright addInitScript), the
// same for this server's viewer and for noVNC, so both are measured the same way:
//
// - paints: the 2D-canvas drawing calls of the page are wrapped; a call on a canvas that is in
//   the document (the visible screen; noVNC's back buffer is not in the document) marks the
//   current animation frame "painted". `paints` counts animation frames (requestAnimationFrame
//   ticks) in which the visible picture changed: what the user sees, at most the display rate.
// - latency: when a time code is on the screen (bench-x clock), it is read back from the
//   visible canvas right after each task that drew on it (a microtask, so after every rect of
//   that update), and the first time a new code shows up, Date.now() minus the code is one
//   damage-to-paint sample. The X client and the browser read the same wall clock
//   (CLOCK_REALTIME) on the same machine, so no alignment is needed; the code carries ms
//   modulo 2^24 and so does the subtraction. With each sample, the time from the last binary
//   WebSocket message before it to the read-back (performance.now()) is kept too: the part
//   of the latency spent in the page (decoding and drawing), the rest is on the way to it.
(() => {
  if (window.__bench) return;
  const CELL = 16; // px per time-code cell (bench-x.c)
  const BITS = 24;
  const MOD = 2 ** BITS;
  /** a cell is read as 1 above this luminance, 0 below; nearer than MARGIN to it is "unsure" */
  const THRESHOLD = 128;
  const MARGIN = 40;
  /** a sample above this is a misread, not a latency (ms) */
  const IMPLAUSIBLE_MS = 60_000;

  const state = {
    paints: 0,
    draws: 0,
    wsBytes: 0,
    wsMessages: 0,
    lastMessageAt: 0,
    lastMessagePerf: 0,
    inPage: [],
    lastDrawAt: 0,
    rafTicks: 0,
    samples: [],
    torn: 0,
    implausible: 0,
    lastCode: -1,
    clock: null,
    canvas: null,
  };
  let dirty = false;
  let readQueued = false;

  const luminance = (data, width, cx, cy) => {
    let sum = 0;
    for (let y = cy - 2; y < cy + 2; y++) {
      for (let x = cx - 2; x < cx + 2; x++) {
        const i = (y * width + x) * 4;
        sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      }
    }
    return sum / 16;
  };

  const readClock = () => {
    readQueued = false;
    const c = state.canvas;
    const at = state.clock;
    if (!c || !at) return;
    const w = BITS * CELL;
    const img = c.getContext('2d').getImageData(at.x, at.y, w, 2 * CELL);
    const now = Date.now();
    let code = 0;
    for (let i = 0; i < BITS; i++) {
      const top = luminance(img.data, w, i * CELL + CELL / 2, CELL / 2);
      const bottom = luminance(img.data, w, i * CELL + CELL / 2, CELL + CELL / 2);
      const sure = Math.abs(top - THRESHOLD) > MARGIN && Math.abs(bottom - THRESHOLD) > MARGIN;
      if (!sure || top > THRESHOLD === bottom > THRESHOLD) {
        state.torn++; // half drawn, smeared, or not on the screen yet
        return;
      }
      code = code * 2 + (top > THRESHOLD ? 1 : 0);
    }
    if (code === state.lastCode) return;
    state.lastCode = code;
    const latency = ((((now % MOD) - code) % MOD) + MOD) % MOD;
    if (latency > IMPLAUSIBLE_MS) state.implausible++;
    else {
      state.samples.push(latency);
      state.inPage.push(Math.round((performance.now() - state.lastMessagePerf) * 10) / 10);
    }
  };

  const drew = (canvas) => {
    // the screen is the largest canvas in the document; ignore small ones (icons, graphs)
    const cur = state.canvas;
    if (
      cur &&
      cur !== canvas &&
      cur.isConnected &&
      canvas.width * canvas.height < cur.width * cur.height
    )
      return;
    state.canvas = canvas;
    state.draws++;
    state.lastDrawAt = Date.now();
    dirty = true;
    if (state.clock && !readQueued) {
      readQueued = true;
      queueMicrotask(readClock);
    }
  };

  const proto = CanvasRenderingContext2D.prototype;
  for (const name of ['drawImage', 'putImageData', 'fillRect', 'clearRect']) {
    const original = proto[name];
    proto[name] = function (...args) {
      const result = original.apply(this, args);
      if (this.canvas.isConnected) drew(this.canvas);
      return result;
    };
  }

  // WebSocket bytes as the page sees them (message payloads), a cross-check of the CDP count
  // that costs next to nothing
  // (a Proxy, so pages get a genuine WebSocket: noVNC checks the object's own prototype)
  const utf8 = new TextEncoder();
  window.WebSocket = new Proxy(window.WebSocket, {
    construct(target, args, newTarget) {
      const ws = Reflect.construct(
        target,
        args,
        newTarget === window.WebSocket ? target : newTarget,
      );
      ws.addEventListener('message', (e) => {
        const d = e.data;
        state.wsBytes +=
          typeof d === 'string' ? utf8.encode(d).length : (d.byteLength ?? d.size ?? 0);
        state.wsMessages++;
        // "quiet" means no picture data: this server's viewer and gateway exchange small text
        // messages (heartbeats, their answers) every second while nothing else flows, which
        // would keep the settle wait from ever ending; pictures (noVNC's RFB, our frames) are
        // binary
        if (typeof d !== 'string') {
          state.lastMessageAt = Date.now();
          state.lastMessagePerf = performance.now();
        }
      });
      return ws;
    },
  });

  const tick = () => {
    state.rafTicks++;
    if (dirty) {
      state.paints++;
      dirty = false;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);

  window.__bench = {
    /** where the time code is on the framebuffer, or null to stop reading it */
    setClock(at) {
      state.clock = at;
      state.lastCode = -1;
    },
    /** zero the counters (start of a measuring phase) */
    reset() {
      Object.assign(state, {
        paints: 0,
        draws: 0,
        rafTicks: 0,
        samples: [],
        inPage: [],
        torn: 0,
        implausible: 0,
        wsBytes: 0,
        wsMessages: 0,
      });
    },
    snapshot() {
      const { paints, draws, rafTicks, samples, inPage, torn, implausible, wsBytes, wsMessages } =
        state;
      const c = state.canvas;
      return {
        paints,
        draws,
        rafTicks,
        samples: [...samples],
        inPage: [...inPage],
        torn,
        implausible,
        wsBytes,
        wsMessages,
        canvas: c ? { width: c.width, height: c.height } : null,
      };
    },
    /** when the last binary WebSocket message arrived (Date.now()), 0 before the first */
    lastMessageAt: () => state.lastMessageAt,
    /**
     * when the viewer last drew on its visible canvas (Date.now()), 0 before the first: a
     * viewer can go on drawing long after the last message came (noVNC works through its
     * receive queue for seconds when it is behind, e.g. CopyRect-heavy window drags)
     */
    lastDrawAt: () => state.lastDrawAt,
    /** the visible canvas as a PNG data URL (lossless) */
    grab() {
      return state.canvas ? state.canvas.toDataURL('image/png') : null;
    },
  };
})();
