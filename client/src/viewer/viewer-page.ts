/**
 * `/desktop/:sessionId` — the viewer. Wires the connection to the frame pipeline
 * (frame-pipeline.ts), input, clipboard and the chrome around the canvas (toolbar, panels,
 * banners, the connecting and end screens). `?shadow=1` attaches view-only (an
 * administrator watching).
 */
import type { AttachRequest, AttachResult, KeyboardLayout, Preferences } from '@vdi/shared';
import { io } from 'socket.io-client';
import { confirmDialog } from '../dialog';
import { h } from '../dom';
import { ApiError, api, errorMessage, seg } from '../http';
import { navigate, currentPath, type Page, type RouteContext } from '../router';
import { AudioPanel } from './audio-panel';
import { AudioPlayer } from './audio-player';
import { MicCapture } from './mic-capture';
import { AutoHide } from './auto-hide';
import { Banners } from './banners';
import { CanvasPainter } from './canvas-painter';
import { ClipboardPanel } from './clipboard-panel';
import { ClipboardSync, readClipboardIfGranted, writeClipboard } from './clipboard-sync';
import {
  ViewerConnection,
  SOCKET_OPTIONS,
  type ViewerSocket,
  type ViewerState,
  type StateDetail,
} from './connection';
import { ConnectionScreens } from './connection-screens';
import { LogoffCountdown } from './countdown';
import { cursorCss } from './cursor';
import { FilesPanel } from './files-panel';
import { FramePipeline } from './frame-pipeline';
import { Fullscreen } from './fullscreen';
import { KeyboardInput } from './keyboard-input';
import { LayoutMapper } from './keyboard-layout';
import { OnScreenKeyboard } from './on-screen-keyboard';
import { toFramebuffer } from './pointer';
import { PointerInput } from './pointer-input';
import { RepaintRequests } from './repaint-requests';
import { DesktopResizer, displaySize, type DisplayMode } from './resize';
import { comboEvents } from './special-keys';
import { TouchInput } from './touch';
import { ViewerStats } from './stats';
import { StatsPanel } from './stats-panel';
import { installHooks } from './test-hooks';
import { setPanel, viewerToolbar } from './viewer-toolbar';
import { videoCapability } from './video-decoders';

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
  const focusCanvas = (): void => canvas.focus({ preventScroll: true });
  const stage = h('div', { class: 'viewer-stage' }, canvas);
  const toolbar = viewerToolbar(shadow, (keysyms) => {
    for (const [keysym, down] of comboEvents(keysyms)) conn.key(keysym, down);
    countdown.input();
    focusCanvas();
  });
  const banners = new Banners();
  const countdown = new LogoffCountdown();
  banners.el.append(countdown.el);
  const screens = new ConnectionScreens(shadow);
  const painter = new CanvasPainter(canvas);
  const stats = new ViewerStats();
  const statsPanel = new StatsPanel(stats, () => painter);
  const clipPanel = new ClipboardPanel({
    offer: (text) => clipboard.offer(text),
    interactive: () => conn.interactive,
    sent: focusCanvas,
  });
  const filesPanel = new FilesPanel(sessionId);
  // sound: the session's own viewers only, never a shadowing administrator
  const audio = shadow
    ? undefined
    : new AudioPlayer({ request: (codec) => socket.emit('audio', { codec }) });
  const mic = shadow ? undefined : new MicCapture((pcm) => socket.emit('mic', pcm));
  const audioPanel = audio && mic ? new AudioPanel(audio, mic) : undefined;
  const root = h(
    'div',
    { class: 'viewer', dataset: { state: 'connecting' } },
    stage,
    toolbar.el,
    banners.el,
    statsPanel.el,
    clipPanel.el,
    shadow ? null : filesPanel.el,
    audioPanel?.el,
    screens.overlay,
    screens.endPanel,
  );

  // ── screen ──
  const stageArea = () => ({ width: stage.clientWidth, height: stage.clientHeight });
  const fitCanvas = (): void => {
    const mode = resizer.effectiveMode;
    stage.classList.toggle('is-actual', mode === 'actual');
    const { width, height } = displaySize(
      mode,
      { width: canvas.width, height: canvas.height },
      stageArea(),
    );
    if (width > 0 && height > 0) {
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
  };
  const resizer = new DesktopResizer({
    request: (width, height) => conn.resize(width, height),
    area: stageArea,
    current: () => ({ width: painter.width, height: painter.height }),
    changed() {
      fitCanvas();
      toolbar.displaySelect.value = resizer.mode;
      const fit = toolbar.displaySelect.querySelector<HTMLOptionElement>('option[value="fit"]');
      const reason = resizer.reason;
      if (fit) fit.disabled = reason !== undefined;
      if (reason !== undefined && resizer.mode === 'fit') toolbar.displaySelect.value = 'scale';
      toolbar.displayNote.hidden = reason === undefined;
      toolbar.displayNote.textContent = reason ?? '';
      toolbar.displaySelect.title = reason ?? 'How the desktop fills the window';
      hooks.displayMode = resizer.effectiveMode;
    },
  });
  toolbar.displaySelect.addEventListener('change', () => {
    resizer.setMode(toolbar.displaySelect.value as DisplayMode);
    focusCanvas();
  });
  const resizeObserver = new ResizeObserver(() => {
    fitCanvas();
    resizer.areaChanged();
  });
  resizeObserver.observe(stage);

  const repaint = new RepaintRequests(() => conn.refresh());
  const frames = new FramePipeline(painter, stats, repaint, {
    drawn(frame, resized) {
      if (resized) fitCanvas();
      hooks.framesDrawn++;
      for (const r of frame.rects) if (r.kind === 'video') hooks.videoPainted++;
      hooks.lastSeq = frame.seq;
      hooks.width = painter.width;
      hooks.height = painter.height;
      banners.frameDrawn();
    },
    ack: (seq, renderMs) => conn.ack(seq, renderMs),
    videoFailed(regionId, reason) {
      hooks.videoErrors++;
      conn.videoFailed(regionId, reason);
    },
    outdated() {
      banners.message(
        'The server was updated after this page was opened: reload the page to see your desktop again (it kept running).',
        'error',
      );
    },
  });

  // ── connection ──
  const socket: ViewerSocket = io(SOCKET_OPTIONS);
  socket.on('audio', (data) => audio?.receive(data));
  socket.on('error', (msg) => {
    if (msg.code.startsWith('AUDIO_')) audio?.unavailable(msg.message);
  });
  const autoHide = new AutoHide(toolbar.el, root);

  const showState = (state: ViewerState, detail: StateDetail): void => {
    document.body.dataset.viewer = state;
    root.dataset.state = state;
    screens.show(state, detail);
    // unstable: the picture stays (it is only late), with a note over it
    banners.setUnstable(
      state === 'unstable'
        ? (detail.message ?? 'Connection unstable. Waiting for the network…')
        : null,
    );
    if (state === 'ended') {
      toolbar.logoffBtn.disabled = true;
      countdown.hide();
    }
    autoHide.setPinned(state !== 'connected');
  };

  const request: AttachRequest = shadow ? { sessionId, shadow: true } : { sessionId };
  const conn = new ViewerConnection(socket, request, {
    state: showState,
    attached(res: AttachResult) {
      toolbar.setName(res.name);
      document.title = `${res.name} · VDI`;
      hooks.desktopId = res.desktopId;
      hooks.viewOnly = res.viewOnly;
      if (res.viewOnly && !shadow) toolbar.addViewOnlyBadge();
      if (painter.resize(res.width, res.height)) fitCanvas();
      hooks.width = painter.width;
      hooks.height = painter.height;
      resizer.attached(res.resize);
      banners.attached();
      if (res.sound) audio?.attached();
      else audio?.unavailable('this desktop has no sound');
      // no Sound button on a desktop without sound (a plain VNC server): nothing to set there
      toolbar.soundBtn.hidden = !res.sound;
      if (!res.sound && audioPanel && !audioPanel.el.hidden) {
        setPanel(audioPanel.el, toolbar.soundBtn, false);
      }
      if (!res.sound) mic?.stop();
      if (!root.contains(document.activeElement) || document.activeElement === document.body) {
        focusCanvas();
      }
    },
    detached() {
      frames.reset();
      keyboard.forget();
      pointer.forget();
    },
    frame(data) {
      frames.receive(data);
      hooks.bytesReceived = stats.bytesReceived;
    },
    cursor(msg) {
      if (!shadow) canvas.style.cursor = cursorCss(msg);
    },
    clipboard(text) {
      clipPanel.show(text);
      if (!shadow) clipboard.fromDesktop(text);
    },
    session: (msg) => banners.sessionStatus(msg),
    notice(msg) {
      banners.message(msg.from ? `Message from ${msg.from}: ${msg.text}` : msg.text);
    },
    shadow(msg) {
      banners.setWatched(msg.watched, msg.by);
    },
    warning(msg) {
      if (!shadow) countdown.warn(msg);
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
  const layout = new LayoutMapper();
  const keyboard = new KeyboardInput(canvas, {
    translate: (e) => layout.translate(e),
    send: (keysym, down) => {
      countdown.input();
      return conn.key(keysym, down);
    },
    enabled: inputEnabled,
    pasted: (text) => {
      clipboard.offer(text);
    },
  });
  const pointer = new PointerInput(canvas, {
    send: (x, y, buttons) => {
      countdown.input();
      return conn.pointer(x, y, buttons);
    },
    enabled: inputEnabled,
    pressed: () => {
      if (document.activeElement !== canvas) focusCanvas();
    },
  });
  const touch = new TouchInput(canvas, {
    send(clientX, clientY, buttons) {
      const { x, y } = toFramebuffer(
        clientX,
        clientY,
        canvas.getBoundingClientRect(),
        canvas.width,
        canvas.height,
      );
      countdown.input();
      conn.pointer(x, y, buttons);
    },
    enabled: inputEnabled,
    zoomed(scale, center) {
      // the view only: the canvas grows around the fingers, the desktop keeps its size
      const box = stage.getBoundingClientRect();
      canvas.style.transformOrigin = `${center.x - box.left - canvas.offsetLeft}px ${center.y - box.top - canvas.offsetTop}px`;
      canvas.style.transform = scale === 1 ? '' : `scale(${scale})`;
      hooks.zoom = scale;
    },
    pressed: () => {
      if (document.activeElement !== canvas) focusCanvas();
    },
  });
  const osk = new OnScreenKeyboard({
    send: (keysym, down) => {
      countdown.input();
      conn.key(keysym, down);
    },
    enabled: inputEnabled,
  });
  root.append(osk.input);
  toolbar.keyboardBtn.addEventListener('click', () => osk.open());
  canvas.addEventListener('focus', () => void clipboard.pull());
  canvas.addEventListener('blur', () => {
    pointer.releaseButtons();
    layout.reset();
  });
  // the keyboard layout is the user's, kept on the server; shadows send no keys
  const layoutSelect = toolbar.layoutSelect;
  if (layoutSelect) {
    void api
      .get<Preferences>('/api/me/preferences')
      .then((p) => {
        layout.layout = p.keyboardLayout;
        layoutSelect.value = p.keyboardLayout;
        hooks.keyboardLayout = p.keyboardLayout;
      })
      .catch(() => {
        // the default (the computer's own layout) stays
      });
    layoutSelect.addEventListener('change', () => {
      const chosen = layoutSelect.value as KeyboardLayout;
      layout.layout = chosen;
      hooks.keyboardLayout = chosen;
      keyboard.releaseAll();
      focusCanvas();
      api.put('/api/me/preferences', { keyboardLayout: chosen }).catch((err: unknown) => {
        if (!(err instanceof ApiError && err.status === 401))
          banners.message(`Could not save the keyboard layout: ${errorMessage(err)}`, 'error');
      });
    });
  }
  const onWindowFocus = (): void => {
    if (document.activeElement === canvas) void clipboard.pull();
  };
  window.addEventListener('focus', onWindowFocus);

  // ── toolbar ──
  toolbar.clipboardBtn.addEventListener('click', () =>
    setPanel(clipPanel.el, toolbar.clipboardBtn, clipPanel.el.hidden === true),
  );
  const openFiles = (open: boolean): void => {
    setPanel(filesPanel.el, toolbar.filesBtn, open);
    if (open) void filesPanel.refresh();
  };
  toolbar.filesBtn.addEventListener('click', () => openFiles(filesPanel.el.hidden === true));
  if (!shadow) filesPanel.acceptDrops(root, () => openFiles(true));
  toolbar.soundBtn.addEventListener('click', () => {
    const open = audioPanel?.el.hidden === true;
    if (audioPanel) setPanel(audioPanel.el, toolbar.soundBtn, open);
    audioPanel?.show();
  });
  toolbar.statsBtn.addEventListener('click', () => {
    const open = statsPanel.el.hidden === true;
    setPanel(statsPanel.el, toolbar.statsBtn, open);
    statsPanel.setOpen(open);
  });
  const fullscreen = new Fullscreen(root, toolbar.fullscreenBtn, focusCanvas);
  toolbar.fullscreenBtn.addEventListener('click', () => fullscreen.toggle());
  toolbar.disconnectBtn.addEventListener('click', () => {
    keyboard.releaseAll();
    conn.close();
    navigate(shadow ? '/admin/sessions' : '/');
  });
  toolbar.logoffBtn.addEventListener('click', async () => {
    const sure = await confirmDialog(
      'Log off?',
      'Logging off closes every application in the desktop. Unsaved work is lost.',
      'Log off',
    );
    if (!sure) return focusCanvas();
    toolbar.logoffBtn.disabled = true;
    keyboard.releaseAll();
    try {
      await api.post(`/api/sessions/${seg(sessionId)}/logoff`);
      // the end screen (data-viewer=ended) with a link back to the list; the server's own
      // "session ended" event may have shown it already
      conn.ended('You logged off. The desktop and its applications were closed.');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      banners.message(`Could not log off: ${errorMessage(err)}`, 'error');
      toolbar.logoffBtn.disabled = false;
    }
  });
  screens.reconnectBtn.addEventListener('click', () => conn.reconnect());

  // ask the server for video only if this browser decodes it (checked before the first attach)
  void videoCapability().then((codecs) => {
    request.video = codecs;
    hooks.videoCodecs = codecs;
    conn.start();
  });

  return {
    el: root,
    title: shadow ? 'Shadowing' : 'Desktop',
    dispose() {
      keyboard.dispose();
      pointer.dispose();
      audio?.dispose();
      mic?.dispose();
      touch.dispose();
      conn.close();
      frames.reset();
      autoHide.dispose();
      resizeObserver.disconnect();
      resizer.dispose();
      countdown.hide();
      statsPanel.dispose();
      window.removeEventListener('focus', onWindowFocus);
      fullscreen.dispose();
      delete document.body.dataset.viewer;
    },
  };
}
