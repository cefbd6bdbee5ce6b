/** Who acts: a signed-in user (with the address they came from) or the server itself. */
export interface Actor {
  id: string | null;
  name: string | null;
  ip?: string | null;
}

/** The server acting on its own: timeouts, health checks, reconciliation. */
export const SYSTEM: Actor = { id: null, name: 'system' };
