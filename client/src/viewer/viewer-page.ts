/**
 * `/desktop/:sessionId` — the viewer. Wires the connection, the frame pipeline
 * (decode concurrently → draw in order → ack), input, clipboard and the chrome around the
 * canvas. `?shadow=1` attaches view-only (an administrator watching).
 */
import { decodeFrame, type AttachResult } from '@vdi/shared';
import { io } from 'socket.io-client';
import { field, h } from '../dom';
import { ApiError, api, errorMessage, seg } from '../http';
import { navigate, currentPath, type Page, type RouteContext } from '../router';
import { AutoHide } from './auto-hide';
import { Banners } from './banners';
import { CanvasPainter } from './canvas-painter';
import { ClipboardSync, readClipboardIfGranted, writeClipboard } from './clipboard-sync';
import {
  ViewerConnection,
  SOCKET_OPTIONS,
  type ViewerSocket,
  type ViewerState,
  type StateDetail,
} from './connection';
import { cursorCss } from './cursor';
import { FrameQueue } from './frame-queue';
import { KeyboardInput } from './keyboard-input';
import { fitSize } from './pointer';
import { PointerInput } from './pointer-input';
import { decodeRects, peekSeq, releaseFrame, type DecodedFrame } from './rect-decoder';
import { InflateStream } from './inflate-stream';
import { ViewerStats } from './stats';
import { installHooks } from './test-hooks';

/** Least time between two repaint requests after decode failures, ms. */
const REFRESH_THROTTLE_MS = 2000;
/** Stats overlay refresh period, ms. */
const STATS_PERIOD_MS = 1000;

interface KeyboardLock {
  lock?(keys?: string[]): Promise<void>;
  unlock?(): void;
}

export function viewerPage({ params, url }: RouteContext): Page {
  const sessionId = params.sessionId ?? '';
  const shadow = url.searchParams.get('shadow') === '1';
  const hooks = installHooks(sessionId);
  document.body.dataset.viewer = 'connecting';

  // ── DOM ──
  const canvas = h('canvas', {
    id: 'screen',
    tabIndex: 0,
    width: 1024,
    height: 768,
    attrs: { autofocus: true, 'aria-label': 'Remote desktop' },
  });
  const stage = h('div', { class: 'viewer-stage' }, canvas);
  const title = h('span', { class: 'viewer-name' }, 'Desktop');
  const badges = h('span', { class: 'viewer-badges' });
  if (shadow) badges.append(h('span', { class: 'badge badge-viewonly' }, 'View only'));

  const toggle = (label: string, tip: string) => {
    const b = h(
      'button',
      { type: 'button', class: 'tb-btn', title: tip, attrs: { 'aria-pressed': 'false' } },
      label,
    );
    return b;
  };
  const clipboardBtn = toggle('Clipboard', 'Show the clipboard panel');
  const statsBtn = toggle('Stats', 'Show connection statistics');
  const fullscreenBtn = toggle('Fullscreen', 'Full screen');
  const disconnectBtn = h(
    'button',
    { type: 'button', class: 'tb-btn', title: 'Close the viewer; the desktop keeps running' },
    'Disconnect',
  );
  const logoffBtn = h(
    'button',
    {
      type: 'button',
      class: 'tb-btn tb-danger',
      title: 'End the session and close its applications',
    },
    'Log off',
  );
  const toolbar = h(
    'div',
    { class: 'viewer-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Desktop' } },
    h('span', { class: 'viewer-title' }, title, badges),
    h(
      'span',
      { class: 'viewer-actions' },
      shadow ? null : clipboardBtn,
      statsBtn,
      fullscreenBtn,
      disconnectBtn,
      shadow ? null : logoffBtn,
    ),
  );

  const banners = new Banners();

  const overlayText = h('strong', null, 'Connecting…');
  const overlayDetail = h('span', { class: 'overlay-detail' });
  const overlay = h(
    'div',
    { class: 'viewer-overlay', attrs: { role: 'status' } },
    h(
      'div',
      { class: 'overlay-box' },
      h('span', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }),
      overlayText,
      overlayDetail,
    ),
  );

  const endTitle = h('h2', null, 'Your session has ended');
  const endReason = h('p', { class: 'end-reason' });
  const reconnectBtn = h(
    'button',
    { type: 'button', class: 'btn btn-primary', hidden: true },
    'Reconnect',
  );
  const endPanel = h(
    'section',
    { class: 'viewer-end', hidden: true },
    h(
      'div',
      { class: 'card end-card' },
      endTitle,
      endReason,
      h(
        'div',
        { class: 'card-actions' },
        reconnectBtn,
        h(
          'a',
          { href: shadow ? '/admin/sessions' : '/', class: 'btn' },
          shadow ? 'Back to sessions' : 'Back to my desktops',
        ),
      ),
    ),
  );

  const clipText = h('textarea', {
    rows: 6,
    spellcheck: false,
    placeholder: 'Text copied in the desktop shows up here.',
  });
  const clipSend = h('button', { type: 'button', class: 'btn btn-primary btn-small' }, 'Send');
  const clipStatus = h('small', { class: 'hint', attrs: { 'aria-live': 'polite' } });
  const clipPanel = h(
    'aside',
    { class: 'viewer-panel', hidden: true, attrs: { 'aria-label': 'Clipboard' } },
    h('h2', null, 'Clipboard'),
    h(
      'p',
      { class: 'hint' },
      'Copy in the desktop and the text appears here. To paste into the desktop, put text here, press Send, then paste in the desktop.',
    ),
    field('Clipboard text', clipText),
    h('div', { class: 'panel-actions' }, clipStatus, clipSend),
  );

  const statsList = h('dl', { class: 'stats-list' });
  const statsPanel = h(
    'aside',
    { class: 'viewer-panel viewer-stats', hidden: true, attrs: { 'aria-label': 'Statistics' } },
    statsList,
  );

  const root = h(
    'div',
    { class: 'viewer', dataset: { state: 'connecting' } },
    stage,
    toolbar,
    banners.el,
    statsPanel,
    clipPanel,
    overlay,
    endPanel,
  );

  // ── screen ──
  const painter = new CanvasPainter(canvas);
  const stats = new ViewerStats();
  let lastDrawn = { rects: 0, quality: 0 };
  let lastRefreshAt = -Infinity;

  const fitCanvas = (): void => {
    const { width, height } = fitSize(
      canvas.width,
      canvas.height,
      stage.clientWidth,
      stage.clientHeight,
    );
    if (width > 0 && height > 0) {
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
  };
  const resizeObserver = new ResizeObserver(fitCanvas);
  resizeObserver.observe(stage);

  const requestRefresh = (why: unknown): void => {
    console.warn('viewer: repaint requested after a decode failure', why);
    const now = performance.now();
    if (now - lastRefreshAt < REFRESH_THROTTLE_MS) return;
    lastRefreshAt = now;
    conn.refresh();
  };

  /** the server's zlib stream for this viewer; restarted by every keyframe */
  const zlib = new InflateStream();
  const queue = new FrameQueue<DecodedFrame>({
    draw(frame) {
      const w = painter.width;
      const hgt = painter.height;
      const failed = painter.paint(frame);
      if (painter.width !== w || painter.height !== hgt) fitCanvas();
      hooks.framesDrawn++;
      hooks.lastSeq = frame.seq;
      hooks.width = painter.width;
      hooks.height = painter.height;
      lastDrawn = { rects: frame.rects.length, quality: frame.quality };
      if (banners.activeCondition === 'unresponsive' || banners.activeCondition === 'starting')
        banners.setCondition(null);
      if (failed) requestRefresh(frame.rects.find((r) => r.kind === 'failed'));
    },
    ack(seq, renderMs) {
      stats.drawn(lastDrawn.rects, renderMs, lastDrawn.quality);
      conn.ack(seq, renderMs);
    },
    discard: releaseFrame,
    fail: (_seq, err) => requestRefresh(err),
  });

  // ── connection ──
  const socket: ViewerSocket = io(SOCKET_OPTIONS);
  const autoHide = new AutoHide(toolbar, root);

  const showState = (state: ViewerState, detail: StateDetail): void => {
    document.body.dataset.viewer = state;
    root.dataset.state = state;
    const waiting = state === 'connecting' || state === 'reconnecting';
    overlay.hidden = !waiting;
    overlayText.textContent = state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…';
    overlayDetail.textContent = !waiting
      ? ''
      : (detail.message ??
        (detail.attempt
          ? `Attempt ${detail.attempt}`
          : state === 'reconnecting'
            ? 'The connection was interrupted.'
            : ''));
    endPanel.hidden = !(state === 'ended' || state === 'disconnected');
    // unstable: the picture stays (it is only late), with a note over it
    banners.setUnstable(
      state === 'unstable'
        ? (detail.message ?? 'Connection unstable. Waiting for the network…')
        : null,
    );
    if (state === 'ended') {
      endTitle.textContent =
        detail.code && detail.code !== 'SESSION_ENDED'
          ? 'Cannot open this desktop'
          : 'Your session has ended';
      endReason.textContent =
        detail.message ||
        (detail.code === 'SESSION_ENDED' || !detail.code
          ? 'The desktop was logged off.'
          : detail.code);
      reconnectBtn.hidden = true;
      logoffBtn.disabled = true;
    } else if (state === 'disconnected') {
      endTitle.textContent = 'Disconnected';
      endReason.textContent = detail.message ?? '';
      reconnectBtn.hidden = false;
    }
    autoHide.setPinned(state !== 'connected');
  };

  const conn = new ViewerConnection(socket, shadow ? { sessionId, shadow: true } : { sessionId }, {
    state: showState,
    attached(res: AttachResult) {
      title.textContent = res.name;
      document.title = `${res.name} · VDI`;
      hooks.desktopId = res.desktopId;
      hooks.viewOnly = res.viewOnly;
      if (res.viewOnly && !shadow)
        badges.append(h('span', { class: 'badge badge-viewonly' }, 'View only'));
      if (painter.resize(res.width, res.height)) fitCanvas();
      hooks.width = painter.width;
      hooks.height = painter.height;
      if (banners.activeCondition === 'lost' || banners.activeCondition === 'retrying')
        banners.setCondition(null);
      if (!root.contains(document.activeElement) || document.activeElement === document.body) {
        canvas.focus({ preventScroll: true });
      }
    },
    detached() {
      queue.reset();
      keyboard.forget();
      pointer.forget();
    },
    frame(data) {
      stats.received(data.byteLength);
      hooks.bytesReceived = stats.bytesReceived;
      let frame;
      try {
        frame = decodeFrame(data);
      } catch (err) {
        const seq = peekSeq(data);
        if (seq !== undefined) conn.ack(seq, 0);
        requestRefresh(err);
        return;
      }
      queue.push(frame.seq, decodeRects(frame, zlib));
    },
    cursor(msg) {
      if (!shadow) canvas.style.cursor = cursorCss(msg);
    },
    clipboard(text) {
      clipText.value = text;
      if (!shadow) clipboard.fromDesktop(text);
    },
    session(msg) {
      if (msg.state === 'desktop-unresponsive' && msg.retry)
        banners.setCondition(
          'retrying',
          `attempt ${msg.retry.attempt}, next in ${Math.max(1, Math.round(msg.retry.inMs / 1000))} s`,
        );
      else if (msg.state === 'desktop-unresponsive')
        banners.setCondition('unresponsive', msg.reason);
      else if (msg.state === 'desktop-lost') banners.setCondition('lost', msg.reason);
      else if (msg.state === 'starting') banners.setCondition('starting');
      else if (msg.state === 'active') banners.setCondition(null);
    },
    notice(msg) {
      banners.message(msg.from ? `Message from ${msg.from}: ${msg.text}` : msg.text);
    },
    shadow(msg) {
      banners.setWatched(msg.watched, msg.by);
    },
    unauthorized() {
      navigate(`/login?next=${encodeURIComponent(currentPath())}`, { replace: true });
    },
  });

  // ── input ──
  const inputEnabled = (): boolean => conn.interactive;
  const clipboard = new ClipboardSync({
    send: (text) => conn.clipboard(text),
    writeLocal: writeClipboard,
    readLocal: readClipboardIfGranted,
  });
  const keyboard = new KeyboardInput(canvas, {
    send: (keysym, down) => conn.key(keysym, down),
    enabled: inputEnabled,
    pasted: (text) => {
      clipboard.offer(text);
    },
  });
  const pointer = new PointerInput(canvas, {
    send: (x, y, buttons) => conn.pointer(x, y, buttons),
    enabled: inputEnabled,
    pressed: () => {
      if (document.activeElement !== canvas) canvas.focus({ preventScroll: true });
    },
  });
  const onCanvasFocus = (): void => void clipboard.pull();
  canvas.addEventListener('focus', onCanvasFocus);
  canvas.addEventListener('blur', () => pointer.releaseButtons());
  const onWindowFocus = (): void => {
    if (document.activeElement === canvas) void clipboard.pull();
  };
  window.addEventListener('focus', onWindowFocus);

  // ── toolbar ──
  const setPanel = (panel: HTMLElement, button: HTMLButtonElement, open: boolean): void => {
    panel.hidden = !open;
    button.setAttribute('aria-pressed', String(open));
  };
  clipboardBtn.addEventListener('click', () =>
    setPanel(clipPanel, clipboardBtn, clipPanel.hidden === true),
  );
  clipSend.addEventListener('click', () => {
    const sent = clipboard.offer(clipText.value);
    clipStatus.textContent = sent
      ? 'Sent. Paste in the desktop (Ctrl+V).'
      : conn.interactive
        ? 'The desktop already has this text.'
        : 'Not connected.';
    canvas.focus({ preventScroll: true });
  });

  let statsTimer = 0;
  const renderStats = (): void => {
    const s = stats.snapshot();
    const rows: Array<[string, string]> = [
      ['FPS', s.fps.toFixed(0)],
      ['Received', `${s.kbps.toFixed(0)} kbit/s`],
      ['Decode + draw', `${s.renderMs.toFixed(1)} ms/frame`],
      ['Quality', s.quality ? String(s.quality) : 'lossless'],
      ['Rects/frame', s.rectsPerFrame.toFixed(1)],
      ['Frames', String(s.framesDrawn)],
      ['Size', `${painter.width}×${painter.height}`],
    ];
    statsList.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  };
  statsBtn.addEventListener('click', () => {
    const open = statsPanel.hidden === true;
    setPanel(statsPanel, statsBtn, open);
    window.clearInterval(statsTimer);
    if (open) {
      renderStats();
      statsTimer = window.setInterval(renderStats, STATS_PERIOD_MS);
    }
  });

  fullscreenBtn.addEventListener('click', () => {
    if (document.fullscreenElement) void document.exitFullscreen().catch(() => {});
    else void root.requestFullscreen?.().catch(() => {});
  });
  const onFullscreenChange = (): void => {
    const on = document.fullscreenElement === root;
    fullscreenBtn.setAttribute('aria-pressed', String(on));
    // In full screen, Chrome can give the desktop Escape, Alt+Tab-like shortcuts too.
    const kb = (navigator as Navigator & { keyboard?: KeyboardLock }).keyboard;
    if (on) void kb?.lock?.().catch(() => {});
    else kb?.unlock?.();
    canvas.focus({ preventScroll: true });
  };
  document.addEventListener('fullscreenchange', onFullscreenChange);

  disconnectBtn.addEventListener('click', () => {
    keyboard.releaseAll();
    conn.close();
    navigate(shadow ? '/admin/sessions' : '/');
  });
  logoffBtn.addEventListener('click', async () => {
    logoffBtn.disabled = true;
    keyboard.releaseAll();
    try {
      await api.post(`/api/sessions/${seg(sessionId)}/logoff`);
      // the end screen (data-viewer=ended) with a link back to the list; the server's own
      // "session ended" event may have shown it already
      conn.ended('You logged off. The desktop and its applications were closed.');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      banners.message(`Could not log off: ${errorMessage(err)}`, 'error');
      logoffBtn.disabled = false;
    }
  });
  reconnectBtn.addEventListener('click', () => conn.reconnect());

  conn.start();

  return {
    el: root,
    title: shadow ? 'Shadowing' : 'Desktop',
    dispose() {
      keyboard.dispose();
      pointer.dispose();
      conn.close();
      queue.reset();
      autoHide.dispose();
      resizeObserver.disconnect();
      window.clearInterval(statsTimer);
      window.removeEventListener('focus', onWindowFocus);
      document.removeEventListener('fullscreenchange', onFullscreenChange);
      if (document.fullscreenElement) void document.exitFullscreen().catch(() => {});
      delete document.body.dataset.viewer;
    },
  };
}
