/**
 * `window.__vdiViewer`: live viewer facts for end-to-end tests (and for curious admins in
 * the console). One object, mutated in place, so a test can poll it.
 */

export interface ViewerHooks {
  /** frames drawn since the viewer opened (across reconnects) */
  framesDrawn: number;
  /** sequence number of the newest drawn frame, -1 before the first */
  lastSeq: number;
  /** framebuffer size (canvas width/height), 0 before attach */
  width: number;
  height: number;
  /** frame bytes received since the viewer opened */
  bytesReceived: number;
  /** video codecs announced at attach (empty: images only) */
  videoCodecs: string[];
  /** video pictures drawn on the canvas */
  videoPainted: number;
  /** video decoder failures reported to the server */
  videoErrors: number;
  /** extra, informative: the attach answer */
  sessionId: string;
  desktopId: string;
  viewOnly: boolean;
  /** how the desktop fills the window now (resize.ts): fit, scale or actual */
  displayMode: string;
  /** the keyboard layout keys are mapped with (keyboard-layout.ts) */
  keyboardLayout: string;
  /** the view's pinch zoom (touch.ts), 1 = none */
  zoom: number;
}

declare global {
  interface Window {
    __vdiViewer?: ViewerHooks;
  }
}

export function installHooks(sessionId: string): ViewerHooks {
  const hooks: ViewerHooks = {
    framesDrawn: 0,
    lastSeq: -1,
    width: 0,
    height: 0,
    bytesReceived: 0,
    videoCodecs: [],
    videoPainted: 0,
    videoErrors: 0,
    sessionId,
    desktopId: '',
    viewOnly: false,
    displayMode: '',
    keyboardLayout: 'auto',
    zoom: 1,
  };
  window.__vdiViewer = hooks;
  return hooks;
}
