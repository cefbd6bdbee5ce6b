import type { Router } from 'express';
import { z } from 'zod';
import { Id } from '@vdi/shared';
import type { Clock } from '../../clock.js';
import type { Db } from '../../store/db.js';
import type { Broker } from '../../broker/broker.js';
import type { PoolAdmin } from '../../broker/pools.js';
import type { Auth } from '../../auth/index.js';
import { IsolationFacts } from '../../providers/sandbox/facts.js';
import type { RfbEndpoint } from '../../rfb/endpoint.js';
import type { ApiRegistry, Handler, In, Out, RouteDoc } from '../registry.js';

/**
 * What the admin routes ask of the viewer gateway: a session's viewer figures (the sessions
 * table), a desktop's thumbnail, a message to a session's viewers.
 */
export interface ViewerGateway {
  sessionStats(sessionId: string): { viewers: number; shadows: number; kbps: number; fps: number };
  thumbnail(desktopId: string, endpoint: RfbEndpoint): Promise<Buffer>;
  sendMessage(sessionId: string, text: string, from: string): Promise<number>;
}

/** What the admin routes work with; app.ts builds it. */
export interface AdminDeps {
  db: Db;
  clock: Clock;
  auth: Auth;
  broker: Broker;
  pools: PoolAdmin;
  live: ViewerGateway;
  /** a user was disabled, deleted, or had their password or role changed: sign them out */
  onUserDisabled: (userId: string) => Promise<void>;
}

/** `:id` in a path */
export const IdParam = z.object({ id: Id });

type Req = { user?: Express.User; ip?: string | undefined };

/**
 * Where each section of the admin API declares its routes: under /api/admin, for
 * administrators only, documented in /api/openapi.json.
 */
export class AdminScope {
  /** one for every route: it remembers each desktop's last CPU reading */
  readonly isolation = new IsolationFacts();

  constructor(
    private readonly router: Router,
    private readonly reg: ApiRegistry,
    readonly deps: AdminDeps,
  ) {}

  route<S extends z.ZodType | undefined, R extends z.ZodType | undefined = undefined>(
    doc: Omit<RouteDoc, 'body' | 'response' | 'access'> & { body?: S; response?: R },
    handler: Handler<In<S>, Out<R>>,
  ): void {
    this.reg.add(
      this.router,
      '/api/admin',
      { ...doc, access: 'admin' },
      this.deps.auth.requireAdmin,
      handler,
    );
  }

  /** Record an administrator's action in the audit log. */
  audit(req: Req, action: string, target: string | null, detail?: unknown): Promise<void> {
    return this.deps.broker.audit.record({
      actor: req.user!.username,
      action,
      target,
      ip: req.ip ?? null,
      detail,
    });
  }
}
