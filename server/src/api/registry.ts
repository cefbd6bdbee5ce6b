import type { NextFunction, Request, Response, Router } from 'express';
import { z } from 'zod';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type Access = 'public' | 'user' | 'admin';

export interface RouteDoc {
  method: Method;
  path: string;
  summary: string;
  access: Access;
  body?: z.ZodType;
  query?: z.ZodType;
  response?: z.ZodType;
  /** non-JSON answers (thumbnails) */
  produces?: string;
}

/**
 * A route's handler: its answer has the type of the route's response schema (shared/), or is
 * undefined when the handler answered itself (an error, a JPEG) or the route answers 204.
 */
export type Handler<B, O> = (
  req: Request & { parsedBody: B },
  res: Response,
) => Promise<O | void> | O | void;

/** The body a schema validates, or undefined without one. */
export type In<S> = S extends z.ZodType ? z.infer<S> : undefined;
/** The answer a response schema describes; routes without one answer nothing (204). */
export type Out<R> = R extends z.ZodType ? z.infer<R> : undefined;

/**
 * Routes are declared with their schemas so one declaration both validates the body and
 * documents the call in /api/openapi.json.
 */
export class ApiRegistry {
  readonly routes: RouteDoc[] = [];

  add<S extends z.ZodType | undefined, R extends z.ZodType | undefined = undefined>(
    router: Router,
    prefix: string,
    doc: Omit<RouteDoc, 'body' | 'response'> & { body?: S; response?: R },
    guard: (req: Request, res: Response, next: NextFunction) => void,
    handler: Handler<In<S>, Out<R>>,
  ): void {
    const full = prefix + doc.path;
    this.routes.push({ ...doc, path: full });
    router[doc.method](full, guard, async (req: Request, res: Response, next: NextFunction) => {
      try {
        const r = req as Request & { parsedBody: unknown };
        r.parsedBody = doc.body ? doc.body.parse(req.body ?? {}) : undefined;
        if (doc.query) doc.query.parse(req.query);
        const out = await handler(r as Request & { parsedBody: In<S> }, res);
        if (res.headersSent) return;
        if (out === undefined) res.status(204).end();
        else res.json(out);
      } catch (e) {
        next(e);
      }
    });
  }

  openapi(): unknown {
    const paths: Record<string, Record<string, unknown>> = {};
    const schema = (s: z.ZodType, io: 'input' | 'output') => {
      try {
        return z.toJSONSchema(s, { io, unrepresentable: 'any' });
      } catch {
        return {};
      }
    };
    for (const r of this.routes) {
      const p = r.path.replace(/:(\w+)/g, '{$1}');
      const params = [...r.path.matchAll(/:(\w+)/g)].map((m) => ({
        name: m[1],
        in: 'path',
        required: true,
        schema: { type: 'string' },
      }));
      const op: Record<string, unknown> = {
        summary: r.summary,
        tags: [r.access === 'admin' ? 'admin' : r.access === 'user' ? 'user' : 'public'],
        security: r.access === 'public' ? [] : [{ cookie: [] }],
        parameters: params,
        responses: {
          [r.response || r.produces ? '200' : '204']: r.produces
            ? { description: 'OK', content: { [r.produces]: {} } }
            : r.response
              ? {
                  description: 'OK',
                  content: { 'application/json': { schema: schema(r.response, 'output') } },
                }
              : { description: 'Done' },
          '400': {
            description: 'Invalid input',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
          },
          ...(r.access !== 'public' ? { '401': { description: 'Not signed in' } } : {}),
          ...(r.access === 'admin' ? { '403': { description: 'Not an administrator' } } : {}),
        },
      };
      if (r.body)
        op.requestBody = {
          required: true,
          content: { 'application/json': { schema: schema(r.body, 'input') } },
        };
      if (r.query) {
        const js = schema(r.query, 'input') as { properties?: Record<string, unknown> };
        for (const [name, s] of Object.entries(js.properties ?? {}))
          (op.parameters as unknown[]).push({ name, in: 'query', required: false, schema: s });
      }
      (paths[p] ??= {})[r.method] = op;
    }
    return {
      openapi: '3.1.0',
      info: {
        title: 'VDI server API',
        version: '1',
        description:
          'Every admin console action is one of these calls. State-changing calls need the header X-Requested-With: vdi.',
      },
      components: {
        securitySchemes: { cookie: { type: 'apiKey', in: 'cookie', name: 'vdi.sid' } },
        schemas: {
          Error: {
            type: 'object',
            properties: {
              error: {
                type: 'object',
                properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
                required: ['code', 'message'],
              },
            },
          },
        },
      },
      paths,
    };
  }
}
