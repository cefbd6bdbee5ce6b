import type { RequestHandler } from 'express';
import session from 'express-session';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import type { Db } from '../store/db.js';
import type { UserRow } from '../store/schema.js';
import type { Clock } from '../clock.js';
import { DbSessionStore } from '../store/session-store.js';
import { AuthError } from './auth-error.js';
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

/** The local strategy's `info.message` for a right password on a disabled account. */
export const ACCOUNT_DISABLED = 'account-disabled';

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
          if (!ok) return done(null, false);
          // only someone who knows the password learns that the account is disabled
          if (row.disabled) return done(null, false, { message: ACCOUNT_DISABLED });
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

  // the API's error handler answers these with their status and code
  const requireUser: RequestHandler = (req, _res, next) => {
    if (!req.user) return next(new AuthError(401, 'UNAUTHENTICATED', 'sign in first'));
    next();
  };
  const requireAdmin: RequestHandler = (req, _res, next) => {
    if (!req.user) return next(new AuthError(401, 'UNAUTHENTICATED', 'sign in first'));
    if (req.user.role !== 'admin')
      return next(new AuthError(403, 'FORBIDDEN', 'administrators only'));
    next();
  };

  return {
    sessionMiddleware,
    passportInit: pp.initialize(),
    passportSession: pp.session() as RequestHandler,
    store,
    requireUser,
    requireAdmin,
    throttle: new LoginThrottle(clock, opts.login),
    passport: pp as unknown as passport.PassportStatic,
  };
}
