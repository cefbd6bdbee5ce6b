/** Wire numbers of RFB 3.8 (RFC 6143) and the community extensions this client speaks. */

export const ClientMessageType = {
  SetPixelFormat: 0,
  SetEncodings: 2,
  FramebufferUpdateRequest: 3,
  KeyEvent: 4,
  PointerEvent: 5,
  ClientCutText: 6,
  EnableContinuousUpdates: 150,
  ClientFence: 248,
  SetDesktopSize: 251,
} as const;

export const ServerMessageType = {
  FramebufferUpdate: 0,
  SetColourMapEntries: 1,
  Bell: 2,
  ServerCutText: 3,
  EndOfContinuousUpdates: 150,
  ServerFence: 248,
} as const;

/** Encodings and pseudo-encodings (signed 32-bit on the wire). */
export const Encoding = {
  Raw: 0,
  CopyRect: 1,
  Tight: 7,
  ZRLE: 16,
  DesktopSize: -223,
  LastRect: -224,
  Cursor: -239,
  ExtendedDesktopSize: -308,
  Fence: -312,
  ContinuousUpdates: -313,
} as const;

export const SecurityType = {
  Invalid: 0,
  None: 1,
  VncAuth: 2,
} as const;

export const FenceFlag = {
  BlockBefore: 0x1,
  BlockAfter: 0x2,
  SyncNext: 0x4,
  /** bit 31: the message asks for an answer; answers have it cleared */
  Request: 0x8000_0000,
} as const;

/** ServerFence / ClientFence payloads are at most this long, bytes (the length is a U8). */
export const MAX_FENCE_PAYLOAD = 64;

/**
 * Most screens accepted in an ExtendedDesktopSize layout. The field is a U8 (255); a
 * desktop with more than this many monitors is not something a VDI server meets.
 */
export const MAX_SCREENS = 64;

/** Longest reason string (security failure, auth failure) we read, bytes. */
export const MAX_REASON_LENGTH = 4096;

/** The pixel format we ask for: 4 bytes a pixel, in memory order R, G, B, X. */
export const BYTES_PER_PIXEL = 4;

/** ExtendedDesktopSize x-position: why the layout changed. */
export const DesktopSizeReason = {
  Server: 0,
  ThisClient: 1,
  OtherClient: 2,
} as const;

/** ExtendedDesktopSize y-position: result of a SetDesktopSize. */
export const DesktopSizeStatus = {
  Ok: 0,
  Prohibited: 1,
  OutOfResources: 2,
  InvalidLayout: 3,
} as const;
