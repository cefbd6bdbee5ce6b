import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import session from 'express-session';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import type { Logger } from 'pino';
import { LoginBody, Me } from '@vdi/shared';
import type { Db } from '../store/db.js';
import type { UserRow } from '../store/schema.js';
import type { Clock } from '../clock.js';
import { DbSessionStore } from '../store/session-store.js';
import type { AuditLog } from '../audit/audit-log.js';
import { sendError } from '../api/http-error.js';
import type { ApiRegistry } from '../api/registry.js';
import { LoginThrottle, type LoginThrottleOptions } from './rate-limit.js';
import { dummyHash, verifyPassword } from './passwords.js';

export interface AuthedUser {
  id: string;
  username: string;
  role: 'user' | 'admin';
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    // passport's req.user
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface User extends AuthedUser {}
  }
}

export const COOKIE_NAME = 'vdi.sid';

export interface AuthOptions {
  secret: string;
  maxAgeMs: number;
  secure: 'auto' | boolean;
  login: LoginThrottleOptions;
}

export interface Auth {
  sessionMiddleware: RequestHandler;
  passportInit: RequestHandler;
  passportSession: RequestHandler;
  store: DbSessionStore;
  requireUser: RequestHandler;
  requireAdmin: RequestHandler;
  throttle: LoginThrottle;
  /** this server's own Passport instance (not the global singleton) */
  passport: passport.PassportStatic;
}

async function loadUser(db: Db, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export function createAuth(db: Db, clock: Clock, opts: AuthOptions): Auth {
  const store = new DbSessionStore(db, clock, opts.maxAgeMs);
  const sessionMiddleware = session({
    name: COOKIE_NAME,
    secret: opts.secret,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    proxy: undefined,
    cookie: {
      httpOnly: true,
      sameSite: 'lax',
      secure: opts.secure,
      maxAge: opts.maxAgeMs,
      path: '/',
    },
  });

  const pp = new passport.Passport();
  pp.use(
    new LocalStrategy(
      { usernameField: 'username', passwordField: 'password' },
      (username, password, done) => {
        (async () => {
          const row = await db
            .selectFrom('users')
            .selectAll()
            .where('username', '=', username)
            .executeTakeFirst();
          if (!row) {
            await verifyPassword(await dummyHash(), password); // same work as a real check
            return done(null, false);
          }
          const ok = await verifyPassword(row.password_hash, password);
          if (!ok || row.disabled) return done(null, false);
          done(null, { id: row.id, username: row.username, role: row.role });
        })().catch(done);
      },
    ),
  );
  pp.serializeUser((user, done) => done(null, user.id));
  // the user is re-read on every request, so disabling or demoting takes effect at once
  pp.deserializeUser((id: string, done) => {
    loadUser(db, id).then(
      (row) =>
        done(
          null,
          row && !row.disabled ? { id: row.id, username: row.username, role: row.role } : false,
        ),
      done,
    );
  });

  const requireUser: RequestHandler = (req, res, next) => {
    if (!req.user) return sendError(res, 401, 'UNAUTHENTICATED', 'sign in first');
    next();
  };
  const requireAdmin: RequestHandler = (req, res, next) => {
    if (!req.user) return sendError(res, 401, 'UNAUTHENTICATED', 'sign in first');
    if (req.user.role !== 'admin') return sendError(res, 403, 'FORBIDDEN', 'administrators only');
    next();
  };

  return {
    sessionMiddleware,
    passportInit: pp.initialize(),
    passportSession: pp.session(),
    store,
    requireUser,
    requireAdmin,
    throttle: new LoginThrottle(clock, opts.login),
    passport: pp as unknown as passport.PassportStatic,
  };
}

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
      response: Me,
    },
    open,
    async (req, res) => {
      const { username } = req.parsedBody;
      const ip = req.ip ?? 'unknown';
      const wait = auth.throttle.check(ip, username);
      if (wait > 0) {
        await audit.record({ actor: username, action: 'auth.throttled', ip });
        res.setHeader('Retry-After', Math.ceil(wait / 1000));
        return sendError(
          res,
          429,
          'RATE_LIMITED',
          `too many sign-in attempts; try again in ${Math.ceil(wait / 1000)} s`,
        );
      }
      const user = await new Promise<Express.User | false>((resolve, reject) => {
        pp.authenticate('local', { session: false }, (err: unknown, u: Express.User | false) =>
          err ? reject(err) : resolve(u),
        )(req, res, () => undefined);
      });
      if (!user) {
        auth.throttle.fail(ip, username);
        await audit.record({ actor: username, action: 'auth.failed', ip });
        return sendError(res, 401, 'BAD_CREDENTIALS', 'wrong username or password');
      }
      auth.throttle.succeed(ip, username);
      // req.login regenerates the session id (passport ≥ 0.6): no session fixation
      await new Promise<void>((resolve, reject) =>
        req.login(user, (err) => (err ? reject(err as Error) : resolve())),
      );
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
