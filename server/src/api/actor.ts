import type { Actor } from '../broker/actor.js';

/** The signed-in user of a request, as the broker and the audit log name who acted. */
export function actorOf(req: {
  user?: Express.User;
  ip?: string | undefined;
}): Actor & { id: string } {
  return { id: req.user!.id, name: req.user!.username, ip: req.ip ?? null };
}
