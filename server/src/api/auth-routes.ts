import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import type { Logger } from 'pino';
import { LoginAnswer, LoginBody, Me } from '@vdi/shared';
import type { AuditLog } from '../audit/audit-log.js';
import { ACCOUNT_DISABLED, type Auth } from '../auth/index.js';
import { metrics } from '../metrics.js';
import { sendError } from './http-error.js';
import type { ApiRegistry } from './registry.js';

/** /api/auth: sign-in (rate limited, session regenerated), sign-out, who am I. */
export function authRoutes(
  router: Router,
  reg: ApiRegistry,
  auth: Auth,
  audit: AuditLog,
  log: Logger,
  onLogout: (sessionId: string) => void,
): void {
  const pp = auth.passport;
  const open = (_req: Request, _res: Response, next: NextFunction) => next();

  reg.add(
    router,
    '/api/auth',
    {
      method: 'post',
      path: '/login',
      summary: 'Sign in',
      access: 'public',
      body: LoginBody,
      response: LoginAnswer,
    },
    open,
    async (req, res) => {
      const { username } = req.parsedBody;
      const ip = req.ip ?? 'unknown';
      const wait = auth.throttle.check(ip, username);
      if (wait > 0) {
        metrics.signIns.inc({ result: 'throttled' });
        await audit.record({ actor: username, action: 'auth.throttled', ip });
        res.setHeader('Retry-After', Math.ceil(wait / 1000));
        return sendError(
          res,
          429,
          'RATE_LIMITED',
          `too many sign-in attempts; try again in ${Math.ceil(wait / 1000)} s`,
        );
      }
      const { user, disabled } = await new Promise<{
        user: Express.User | false;
        disabled: boolean;
      }>((resolve, reject) => {
        const authenticate = pp.authenticate(
          'local',
          { session: false },
          (err: unknown, u: Express.User | false, info?: { message?: string }) =>
            err
              ? reject(err instanceof Error ? err : new Error('sign-in failed'))
              : resolve({ user: u, disabled: info?.message === ACCOUNT_DISABLED }),
        ) as RequestHandler;
        void authenticate(req, res, () => undefined);
      });
      if (!user) {
        auth.throttle.fail(ip, username);
        metrics.signIns.inc({ result: 'failed' });
        await audit.record({
          actor: username,
          action: 'auth.failed',
          ip,
          ...(disabled ? { detail: { reason: 'account disabled' } } : {}),
        });
        return disabled
          ? sendError(
              res,
              403,
              'ACCOUNT_DISABLED',
              'This account is disabled. Ask an administrator to enable it.',
            )
          : sendError(res, 401, 'BAD_CREDENTIALS', 'wrong username or password');
      }
      auth.throttle.succeed(ip, username);
      // req.login regenerates the session id (passport ≥ 0.6): no session fixation
      await new Promise<void>((resolve, reject) =>
        req.login(user, (err) => (err ? reject(err as Error) : resolve())),
      );
      metrics.signIns.inc({ result: 'succeeded' });
      await audit.record({ actor: user.username, action: 'auth.login', ip });
      log.info({ user: user.username, ip }, 'signed in');
      return { user };
    },
  );

  reg.add(
    router,
    '/api/auth',
    { method: 'post', path: '/logout', summary: 'Sign out', access: 'public' },
    open,
    async (req) => {
      const sid = req.sessionID;
      const who = req.user?.username ?? null;
      if (req.user) {
        await new Promise<void>((resolve, reject) =>
          req.logout((err) => (err ? reject(err as Error) : resolve())),
        );
        await audit.record({ actor: who, action: 'auth.logout', ip: req.ip ?? null });
        onLogout(sid);
      }
      return undefined;
    },
  );

  reg.add(
    router,
    '/api/auth',
    { method: 'get', path: '/me', summary: 'The signed-in user', access: 'user', response: Me },
    auth.requireUser,
    (req) => req.user,
  );
}
