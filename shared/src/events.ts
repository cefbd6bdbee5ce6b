import { z } from 'zod';
import { AudioRequest, MicChunk } from './audio.js';

/**
 * Socket.IO event maps used by both ends (typed, so a renamed event breaks the build).
 * Every client → server payload also has a zod schema: the gateway validates each event
 * before it acts, and answers a bad one with an `error` event that changes nothing.
 */

/** Largest clipboard text accepted in either direction, in UTF-16 code units. */
export const MAX_CLIPBOARD_CHARS = 1_000_000;
/** Socket.IO maxHttpBufferSize: the largest client message (clipboard plus envelope), bytes. */
export const MAX_CLIENT_MESSAGE_BYTES = 4 * MAX_CLIPBOARD_CHARS + 4096;

/**
 * Video codec families a region in motion may be sent in (shared/src/frame.ts, Codec.Video).
 * 'avc1': H.264 constrained baseline, Annex-B.
 */
export const VIDEO_CODECS = ['avc1'] as const;
export type VideoCodecFamily = (typeof VIDEO_CODECS)[number];

export const AttachRequest = z.strictObject({
  sessionId: z.string().min(1).max(64),
  /** view-only attach: an admin shadowing someone else's session */
  shadow: z.boolean().optional(),
  /**
   * The video codecs this browser decodes with WebCodecs (checked with
   * VideoDecoder.isConfigSupported), best first; absent or empty: no video, images only.
   */
  video: z.array(z.enum(VIDEO_CODECS)).max(VIDEO_CODECS.length).optional(),
});
export type AttachRequest = z.infer<typeof AttachRequest>;

export const KeyEventMsg = z.strictObject({
  keysym: z.number().int().min(0).max(0xffffffff),
  down: z.boolean(),
});
export type KeyEventMsg = z.infer<typeof KeyEventMsg>;

export const PointerEventMsg = z.strictObject({
  x: z.number().int().min(0).max(65535),
  y: z.number().int().min(0).max(65535),
  /** RFB button mask: bit 0 left, 1 middle, 2 right, 3/4 wheel up/down, 5/6 wheel left/right */
  buttons: z.number().int().min(0).max(255),
});
export type PointerEventMsg = z.infer<typeof PointerEventMsg>;

export const ClipboardMsg = z.strictObject({
  text: z.string().max(MAX_CLIPBOARD_CHARS),
});
export type ClipboardMsg = z.infer<typeof ClipboardMsg>;

export const AckMsg = z.strictObject({
  seq: z.number().int().min(0).max(0xffffffff),
  /**
   * ms from the frame's arrival to its pixels on screen (decode and draw); the server keeps
   * these as a metric (vdi_frame_render_seconds), apart from the lag it paces by
   */
  renderMs: z.number().min(0).max(600_000).optional(),
});
export type AckMsg = z.infer<typeof AckMsg>;

/** The browser could not decode a video chunk: the server sends that viewer images from now on. */
export const VideoErrorMsg = z.strictObject({
  regionId: z.number().int().min(0).max(255),
  /** what the decoder said, for the server's log */
  reason: z.string().max(500),
});
export type VideoErrorMsg = z.infer<typeof VideoErrorMsg>;

export const ResizeRequest = z.strictObject({
  width: z.number().int().min(64).max(8192),
  height: z.number().int().min(64).max(8192),
});
export type ResizeRequest = z.infer<typeof ResizeRequest>;

export type SessionState = 'starting' | 'active' | 'disconnected' | 'ended';

export interface AttachResult {
  ok: true;
  sessionId: string;
  desktopId: string;
  width: number;
  height: number;
  viewOnly: boolean;
  /** display name of the desktop, for the tab title */
  name: string;
  /** can this viewer resize the desktop to its window ("fit to window"), and within what */
  resize: DesktopResize;
  /**
   * can this viewer ask for the desktop's sound: false for a shadowing administrator and
   * for desktops whose provider has none (VMs, a plain VNC server); the viewer then does not ask
   */
  sound: boolean;
}

/** Whether and how far a viewer may resize its desktop (SetDesktopSize). */
export interface DesktopResize {
  /** false: view-only, or the desktop cannot change its size (it is scaled instead) */
  allowed: boolean;
  /**
   * the pool asks for "fit to window" unless the user chose otherwise (its template sets a
   * resizeRange); else the desktop keeps the pool's size and the picture is scaled
   */
  fitByDefault: boolean;
  /** why not, in the viewer's words, when not allowed */
  reason?: string;
  minWidth: number;
  minHeight: number;
  maxWidth: number;
  maxHeight: number;
}
export interface ErrorResult {
  ok: false;
  code: string;
  message: string;
}

export interface CursorMsg {
  width: number;
  height: number;
  hotX: number;
  hotY: number;
  /** PNG of the cursor shape, empty when the cursor is hidden */
  png: ArrayBuffer | Uint8Array;
}

export interface SessionStatusMsg {
  state: SessionState | 'desktop-lost' | 'desktop-unresponsive';
  reason?: string;
  /**
   * With desktop-unresponsive: the gateway lost its link to the desktop and keeps trying to
   * attach this viewer again; `attempt` tries have failed, the next is in `inMs` ms.
   */
  retry?: { attempt: number; inMs: number };
}

/** The server process itself (not one session): it is going away and coming back. */
export interface ServerStatusMsg {
  /** restarting: this server stops (SIGTERM, a deploy); reconnect after `retryAfterMs` */
  state: 'restarting';
  /** how long to wait before the first reconnect try, ms (jittered per viewer) */
  retryAfterMs: number;
}

/**
 * Liveness (an app-level heartbeat besides Socket.IO's own ping): a viewer that has heard
 * nothing from the server for `pingAfterMs` sends a `heartbeat`, which the server answers at
 * once; frames and every other message count as heard too. Nothing heard for `unstableMs`
 * → the viewer shows "connection unstable"; for `lostMs` → it drops the connection and
 * reconnects. Socket.IO's defaults notice a silent network only after ~45 s.
 */
export const HEARTBEAT = {
  /** ms of silence from the server before the viewer sends a heartbeat */
  pingAfterMs: 1000,
  /** ms of silence before the viewer says the connection is unstable */
  unstableMs: 3000,
  /** ms of silence before the viewer gives the connection up and reconnects */
  lostMs: 15_000,
} as const;

/**
 * The session will be logged off in `inMs` ms: idle (no input; input starts the idle clock
 * over) or its maximum length reached. Sent by every broker tick while within the warning lead.
 */
export interface SessionWarningMsg {
  kind: 'idle' | 'max-session';
  inMs: number;
}

export interface ShadowMsg {
  /** true while an admin watches this session */
  watched: boolean;
  by?: string;
}

export interface ServerToClientEvents {
  /** one binary frame (see frame.ts) */
  frame: (data: ArrayBuffer | Uint8Array) => void;
  cursor: (msg: CursorMsg) => void;
  clipboard: (msg: { text: string }) => void;
  session: (msg: SessionStatusMsg) => void;
  /** a message from an administrator */
  notice: (msg: { text: string; from: string }) => void;
  shadow: (msg: ShadowMsg) => void;
  /** a log-off is coming (idle or maximum session length): show a countdown */
  warning: (msg: SessionWarningMsg) => void;
  /** about the server process: it is restarting */
  server: (msg: ServerStatusMsg) => void;
  error: (msg: { code: string; message: string }) => void;
  /** sound: one AUDIO_CODEC_ID byte, then one packet (audio.ts) */
  audio: (data: ArrayBuffer | Uint8Array) => void;
}

export interface ClientToServerEvents {
  attach: (req: AttachRequest, cb: (res: AttachResult | ErrorResult) => void) => void;
  key: (msg: KeyEventMsg) => void;
  pointer: (msg: PointerEventMsg) => void;
  clipboard: (msg: ClipboardMsg) => void;
  ack: (msg: AckMsg) => void;
  resize: (msg: ResizeRequest) => void;
  /** a video chunk could not be decoded: fall back to images for this viewer */
  videoError: (msg: VideoErrorMsg) => void;
  /** ask for a full repaint (the client lost its canvas) */
  refresh: () => void;
  /** are you there? The server calls `cb` at once (see HEARTBEAT) */
  heartbeat: (cb: () => void) => void;
  /** start (in a codec) or stop the desktop's sound */
  audio: (msg: AudioRequest) => void;
  /** microphone PCM for the desktop (audio.ts MicChunk); an empty chunk: the microphone is off */
  mic: (data: MicChunk) => void;
}

/**
 * What the gateway validates each client → server event's payload with. `null`: nothing to
 * validate (`refresh` has no payload; `heartbeat` carries only its acknowledgement callback).
 * Keyed by ClientToServerEvents: an event in one and not the other fails the build.
 */
export type ClientEventSchemaMap = {
  [E in keyof ClientToServerEvents]: Parameters<ClientToServerEvents[E]> extends []
    ? null
    : z.ZodType<Parameters<ClientToServerEvents[E]>[0]> | null;
};

export const ClientEventSchemas = {
  attach: AttachRequest,
  key: KeyEventMsg,
  pointer: PointerEventMsg,
  clipboard: ClipboardMsg,
  ack: AckMsg,
  resize: ResizeRequest,
  videoError: VideoErrorMsg,
  refresh: null,
  heartbeat: null,
  audio: AudioRequest,
  mic: MicChunk,
} as const satisfies ClientEventSchemaMap;

export type ClientEventName = keyof ClientToServerEvents;

/** Every event a client may send; anything else is answered with UNKNOWN_EVENT. */
export const CLIENT_EVENT_NAMES = Object.keys(ClientEventSchemas) as readonly ClientEventName[];
