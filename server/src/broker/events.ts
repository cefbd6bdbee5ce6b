/** What the broker tells the gateway, which owns the viewers. */
export interface BrokerEvents {
  /** a session ended: close its viewers and tell them why */
  'session-ended': [sessionId: string, reason: string];
  /**
   * a session will be logged off soon (idle or maximum length) unless something changes:
   * its viewers show a countdown; `inMs` from now
   */
  'session-warning': [sessionId: string, kind: 'idle' | 'max-session', inMs: number];
  /** close a session's viewers (admin disconnect); the session stays alive */
  'session-disconnect': [sessionId: string];
  /** a desktop's health changed: tell its viewers */
  'desktop-health': [
    desktopId: string,
    state: 'running' | 'unresponsive' | 'paused' | 'dead',
    reason?: string,
  ];
  /** a desktop is about to be stopped and started again in place: viewers let go and re-attach */
  'desktop-restarting': [desktopId: string];
  /** a desktop was reset or restarted in place */
  'desktop-restarted': [desktopId: string];
}
