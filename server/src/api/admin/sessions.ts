import { z } from 'zod';
import { AdminSession, MessageBody } from '@vdi/shared';
import { actorOf } from '../actor.js';
import { HttpError } from '../http-error.js';
import { IdParam, type AdminScope } from './scope.js';

/** Live sessions with their viewers; disconnect, log off, reset the desktop, message the user. */
export function adminSessionRoutes(admin: AdminScope): void {
  const { db, clock, broker, live } = admin.deps;

  admin.route(
    {
      method: 'get',
      path: '/sessions',
      summary: 'Live sessions with viewers, bandwidth and frame rate',
      query: z.strictObject({
        state: z
          .string()
          .regex(
            /^(starting|active|disconnected|ended)(,(starting|active|disconnected|ended))*$/,
            'comma-separated session states',
          )
          .optional(),
      }),
      response: z.array(AdminSession),
    },
    async (req) => {
      const wanted =
        typeof req.query.state === 'string' && req.query.state
          ? req.query.state.split(',')
          : ['starting', 'active', 'disconnected'];
      const infos = await broker.sessionInfos({ states: wanted });
      return Promise.all(
        infos.map(async (s) => {
          const row = await broker.session(s.id);
          const d = await broker.desktop(s.desktopId);
          const pool = await db
            .selectFrom('pools')
            .select('provider')
            .where('id', '=', s.poolId)
            .executeTakeFirst();
          const provider = pool ? broker.provider(pool.provider) : undefined;
          return {
            ...s,
            ...live.sessionStats(s.id),
            lastInputAt: row?.last_input_at ?? null,
            provider: pool?.provider ?? '?',
            desktopState: d ? (d.handle ? await broker.desktopHealth(d.id) : d.state) : 'gone',
            facts: d?.handle && provider?.describe ? provider.describe(d.handle) : {},
            isolation: pool
              ? admin.isolation.of(pool.provider, d?.handle ?? undefined, clock.now())
              : null,
          };
        }),
      );
    },
  );

  const liveSession = async (id: string) => {
    const s = await broker.session(id);
    if (!s || s.state === 'ended')
      throw new HttpError(404, 'SESSION_NOT_FOUND', 'no live session with that id');
    return s;
  };

  admin.route(
    {
      method: 'post',
      path: '/sessions/:id/disconnect',
      summary: 'Disconnect the viewers (desktop keeps running)',
    },
    async (req) => {
      await broker.disconnect(IdParam.parse(req.params).id, actorOf(req));
    },
  );
  admin.route(
    {
      method: 'post',
      path: '/sessions/:id/logoff',
      summary: 'Log the session off',
    },
    async (req) => {
      const s = await liveSession(IdParam.parse(req.params).id);
      await broker.logoff(s.id, actorOf(req), `logged off by administrator ${req.user!.username}`);
    },
  );
  admin.route(
    {
      method: 'post',
      path: '/sessions/:id/reset',
      summary: 'Reset the desktop of a session',
    },
    async (req) => {
      await broker.resetDesktop(IdParam.parse(req.params).id, actorOf(req));
    },
  );
  admin.route(
    {
      method: 'post',
      path: '/sessions/:id/message',
      summary: 'Send a message to the user of a session',
      body: MessageBody,
    },
    async (req) => {
      const s = await liveSession(IdParam.parse(req.params).id);
      const n = await live.sendMessage(s.id, req.parsedBody.text, req.user!.username);
      await admin.audit(req, 'session.message', s.id, { text: req.parsedBody.text, delivered: n });
    },
  );
}
