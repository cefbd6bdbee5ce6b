import type { NextFunction, Request, Response } from 'express';
import { ZodError } from 'zod';
import type { Logger } from 'pino';
import { AuthError } from '../auth/auth-error.js';
import { BrokerError } from '../broker/errors.js';
import { ProviderError } from '../providers/types.js';
import { isUniqueViolation } from '../store/unique-violation.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export function sendError(
  res: Response,
  status: number,
  code: string,
  message: string,
  details?: unknown,
): void {
  res
    .status(status)
    .json({ error: { code, message, ...(details === undefined ? {} : { details }) } });
}

/**
 * Provider errors that are the caller's to fix (a snapshot name that does not exist, a
 * desktop busy with another snapshot), not the server's trouble: their HTTP status. Any
 * other provider error is 503 (the desktop back end is not available).
 */
const PROVIDER_ERROR_STATUS: Record<string, number> = {
  QEMU_NO_SNAPSHOT: 404,
  QEMU_BAD_SNAPSHOT_NAME: 400,
  QEMU_BUSY: 409,
  VNC_OWN_SOCKET: 400,
};

/** The one place an error becomes an HTTP answer; unexpected ones are logged and hidden. */
export function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    if (res.headersSent) return;
    if (err instanceof HttpError)
      return sendError(res, err.status, err.code, err.message, err.details);
    if (err instanceof BrokerError || err instanceof AuthError)
      return sendError(res, err.status, err.code, err.message);
    if (err instanceof ZodError) {
      return sendError(
        res,
        400,
        'INVALID',
        'the request is not valid',
        err.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      );
    }
    if (err instanceof ProviderError) {
      const status = PROVIDER_ERROR_STATUS[err.code] ?? 503;
      if (status >= 500) log.error({ err, path: req.path }, 'provider error');
      return sendError(res, status, err.code, err.message.split('\n')[0] ?? 'provider error');
    }
    if (isUniqueViolation(err)) {
      // a concurrent request created the same thing between a route's check and its insert
      log.warn({ err, path: req.path, method: req.method }, 'unique constraint hit');
      return sendError(
        res,
        409,
        'CONFLICT',
        'that exists already (another request created it at the same time)',
      );
    }
    const e = err as { type?: string; status?: number; message?: string };
    // body-parser: malformed JSON, too large
    if (e.type === 'entity.parse.failed')
      return sendError(res, 400, 'BAD_JSON', 'the body is not valid JSON');
    if (e.type === 'entity.too.large')
      return sendError(res, 413, 'TOO_LARGE', 'the body is too large');
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, e.status, 'BAD_REQUEST', e.message ?? 'bad request');
    }
    log.error({ err, path: req.path, method: req.method }, 'unhandled error in request');
    sendError(res, 500, 'INTERNAL', 'something went wrong on the server; it has been logged');
  };
}
