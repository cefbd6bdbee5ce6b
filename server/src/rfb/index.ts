/** The RFB client module: what the rest of the server uses. */
export { RfbClient, describeEndpoint } from './client.js';
export type {
  RfbClientOptions,
  RfbClientEvents,
  RfbClientPhase,
  RfbCloseEvent,
  ServerInfo,
} from './client.js';
export { RfbError, RfbProtocolError } from './errors.js';
export type { RfbErrorCode, RfbProtocolErrorCode, RfbConnectionErrorCode } from './errors.js';
export type { RfbVersion, RfbSecurity } from './handshake.js';
export type { ExtendedDesktopSizeEvent, Screen } from './decoders/extended-desktop-size.js';
export { DEFAULT_RFB_LIMITS } from './types.js';
export type { FramebufferSink, RfbLimits } from './types.js';
