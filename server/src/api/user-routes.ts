import type { Router } from 'express';
import { z } from 'zod';
import { ConnectResult, Id, MyDesktop, Preferences } from '@vdi/shared';
import type { Broker } from '../broker/broker.js';
import type { Auth } from '../auth/index.js';
import { actorOf } from './actor.js';
import { HttpError } from './http-error.js';
import type { ApiRegistry } from './registry.js';

const PoolParam = z.object({ poolId: Id });
const SessionParam = z.object({ id: Id });
const ConnectBody = z.strictObject({ newSession: z.boolean().optional() });

/** What a signed-in user can do: list their desktops, connect, log off, disconnect. */
export function userRoutes(router: Router, reg: ApiRegistry, auth: Auth, broker: Broker): void {
  reg.add(
    router,
    '/api',
    {
      method: 'get',
      path: '/me/preferences',
      summary: 'My viewer preferences (keyboard layout)',
      access: 'user',
      response: Preferences,
    },
    auth.requireUser,
    (req) => broker.preferences(req.user!.id),
  );

  reg.add(
    router,
    '/api',
    {
      method: 'put',
      path: '/me/preferences',
      summary: 'Set my viewer preferences (keyboard layout)',
      access: 'user',
      body: Preferences,
      response: Preferences,
    },
    auth.requireUser,
    async (req) => {
      await broker.setPreferences(actorOf(req), req.parsedBody);
      return req.parsedBody;
    },
  );

  reg.add(
    router,
    '/api',
    {
      method: 'get',
      path: '/desktops',
      summary: 'Pools I may use, with my live sessions',
      access: 'user',
      response: z.array(MyDesktop),
    },
    auth.requireUser,
    (req) => broker.myDesktops(req.user!.id),
  );

  reg.add(
    router,
    '/api',
    {
      method: 'post',
      path: '/pools/:poolId/connect',
      summary:
        "Get my session in a pool (existing, or a newly assigned desktop); newSession asks for another one up to the pool's max per user",
      access: 'user',
      body: ConnectBody,
      response: ConnectResult,
    },
    auth.requireUser,
    async (req) => {
      const { poolId } = PoolParam.parse(req.params);
      return broker.connect(actorOf(req), poolId, {
        newSession: req.parsedBody.newSession ?? false,
      });
    },
  );

  const ownSession = async (req: { params: unknown; user?: Express.User }) => {
    const { id } = SessionParam.parse(req.params);
    const s = await broker.session(id);
    if (!s || (s.user_id !== req.user!.id && req.user!.role !== 'admin'))
      throw new HttpError(404, 'SESSION_NOT_FOUND', 'no such session');
    return s;
  };

  reg.add(
    router,
    '/api',
    {
      method: 'post',
      path: '/sessions/:id/logoff',
      summary: 'Log off: end the session; the desktop is stopped per pool policy',
      access: 'user',
    },
    auth.requireUser,
    async (req) => {
      const s = await ownSession(req);
      await broker.logoff(s.id, actorOf(req), 'logged off by user');
    },
  );

  reg.add(
    router,
    '/api',
    {
      method: 'post',
      path: '/sessions/:id/disconnect',
      summary: 'Disconnect: close viewers, keep the desktop running',
      access: 'user',
    },
    auth.requireUser,
    async (req) => {
      const s = await ownSession(req);
      await broker.disconnect(s.id, actorOf(req));
    },
  );
}
