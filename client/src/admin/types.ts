/**
 * Admin list items: the shared types plus the fields the admin endpoints add. Extra fields
 * are optional, so an older or newer server still renders.
 */
import type { DesktopIsolation, ProviderKind, Pool, SessionInfo } from '@vdi/shared';

export interface AdminPool extends Pool {
  /** desktops and sessions by state, e.g. { desktops: 3, ready: 1, active: 2 } */
  counts?: Record<string, number>;
}

export interface AdminSession extends SessionInfo {
  viewers?: number;
  kbps?: number;
  fps?: number;
  lastInputAt?: string | null;
  provider?: ProviderKind;
  shadows?: number;
  /** the desktop's health: running, unresponsive, paused… */
  desktopState?: string;
  /** provider facts: display and pid (Xvnc), acceleration KVM/TCG, memory, vCPUs (VMs)… */
  facts?: Record<string, string>;
  /** the desktop's account, network, limits and current CPU/memory */
  isolation?: DesktopIsolation | null;
}

/** GET /api/admin/pools/:id/desktops: shape owned by the server; shown as key/value rows. */
export type AdminDesktop = Record<string, unknown>;
