import type { Request, Router } from 'express';
import { z } from 'zod';
import { DEFAULT_MAX_UPLOAD_MB, DesktopFileEntry, Id, UploadResult } from '@vdi/shared';
import type { Auth } from '../auth/index.js';
import type { Broker } from '../broker/broker.js';
import { ProviderError, type DesktopFiles } from '../providers/types.js';
import type { SessionRow } from '../store/schema.js';
import { HttpError } from './http-error.js';
import type { ApiRegistry } from './registry.js';

const SessionParam = z.object({ id: Id });
const NameParam = z.object({ id: Id, name: z.string().min(1).max(1024) });
const UploadQuery = z.object({ name: z.string().min(1).max(1024) });
const MiB = 1024 * 1024;
/** how long a refused upload's remaining body is read before answering, ms */
const DRAIN_TIMEOUT_MS = 30_000;

/** HTTP status of each error the file helper reports (providers/xvnc/files.ts) */
const FILES_STATUS: Record<string, number> = {
  FILES_BAD_NAME: 400,
  FILES_INCOMPLETE: 400,
  FILES_ABORTED: 400,
  FILES_NOT_FOUND: 404,
  FILES_NOT_A_FILE: 404,
  FILES_NOT_READABLE: 403,
  FILES_NOT_A_FOLDER: 409,
  FILES_DISK_FULL: 507,
};

function asHttp(e: unknown): unknown {
  if (e instanceof ProviderError && FILES_STATUS[e.code])
    return new HttpError(FILES_STATUS[e.code]!, e.code, e.message);
  return e;
}

/**
 * File transfer with the user's own desktop (issue 13): upload into ~/Uploads, list and
 * download ~/Downloads. Only the session's owner (an administrator shadowing it is not its
 * owner), only desktops whose provider reaches their files (Xvnc; VMs answer 409). Each
 * transfer, and each failed one, is in the audit log.
 */
export function filesRoutes(router: Router, reg: ApiRegistry, auth: Auth, broker: Broker): void {
  /** the session's desktop files, for its owner only */
  const filesOf = async (
    req: Request,
  ): Promise<{ session: SessionRow; files: DesktopFiles; template: Record<string, unknown> }> => {
    const { id } = SessionParam.parse(req.params);
    const session = await broker.session(id);
    if (!session || session.state === 'ended')
      throw new HttpError(404, 'SESSION_NOT_FOUND', 'no such session');
    if (session.user_id !== req.user!.id)
      throw new HttpError(
        403,
        'FILES_OWNER_ONLY',
        "only the desktop's owner transfers files with it",
      );
    const desktop = await broker.desktop(session.desktop_id);
    if (!desktop?.handle || (desktop.state !== 'in-use' && desktop.state !== 'ready'))
      throw new HttpError(409, 'DESKTOP_NOT_RUNNING', 'the desktop is not running');
    const pool = await broker.pool(session.pool_id);
    const provider = broker.provider(pool.provider);
    if (!provider.files)
      throw new HttpError(
        409,
        'FILES_NOT_SUPPORTED',
        `file transfer is not supported for ${pool.provider === 'qemu' ? 'virtual machines' : `${pool.provider} desktops`}: the server cannot reach their files`,
      );
    return { session, files: provider.files(desktop.handle), template: pool.template };
  };

  const audit = (
    req: Request,
    session: SessionRow,
    action: string,
    detail: Record<string, unknown>,
  ) =>
    broker.audit.record({
      actor: req.user!.username,
      action,
      target: session.id,
      detail: { desktopId: session.desktop_id, poolId: session.pool_id, ...detail },
      ip: req.ip ?? null,
    });

  reg.add(
    router,
    '/api',
    {
      method: 'get',
      path: '/sessions/:id/files/downloads',
      summary: "The files in my desktop's ~/Downloads",
      access: 'user',
      response: z.array(DesktopFileEntry),
    },
    auth.requireUser,
    async (req) => {
      const { files } = await filesOf(req);
      return files.list().catch((e: unknown) => {
        throw asHttp(e);
      });
    },
  );

  reg.add(
    router,
    '/api',
    {
      method: 'get',
      path: '/sessions/:id/files/downloads/:name',
      summary: "Download a file of my desktop's ~/Downloads",
      access: 'user',
      produces: 'application/octet-stream',
    },
    auth.requireUser,
    async (req, res) => {
      const { name } = NameParam.parse(req.params);
      const { session, files } = await filesOf(req);
      let dl: Awaited<ReturnType<DesktopFiles['download']>>;
      try {
        dl = await files.download(name);
      } catch (e) {
        await audit(req, session, 'file.download.failed', {
          name,
          error: (e as Error).message,
        });
        throw asHttp(e);
      }
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Length', String(dl.size));
      res.setHeader(
        'Content-Disposition',
        `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
      );
      res.setHeader('Cache-Control', 'no-store');
      let sent = 0;
      dl.body.on('data', (c: Buffer) => (sent += c.length));
      res.once('close', () => {
        if (sent < dl.size) dl.cancel();
        void audit(req, session, sent >= dl.size ? 'file.download' : 'file.download.failed', {
          name,
          bytes: sent,
          ...(sent < dl.size ? { error: `stopped after ${sent} of ${dl.size} bytes` } : {}),
        });
      });
      // answered here: the registry must not end the response while the file streams
      await new Promise<void>((resolve) => {
        res.once('close', resolve);
        dl.body.pipe(res);
      });
    },
  );

  reg.add(
    router,
    '/api',
    {
      method: 'post',
      path: '/sessions/:id/files/uploads',
      summary:
        "Upload a file into my desktop's ~/Uploads: ?name=, the raw bytes as the body (application/octet-stream) with Content-Length",
      access: 'user',
      query: UploadQuery,
      response: UploadResult,
    },
    auth.requireUser,
    async (req) => {
      const { name } = UploadQuery.parse(req.query);
      const { session, files, template } = await filesOf(req);
      const maxMb =
        typeof template.maxUploadMb === 'number' ? template.maxUploadMb : DEFAULT_MAX_UPLOAD_MB;
      if (maxMb === 0)
        throw new HttpError(403, 'FILES_UPLOAD_OFF', 'uploads are turned off for this pool');
      const length = Number(req.get('content-length'));
      if (!req.get('content-length') || !Number.isSafeInteger(length) || length < 0)
        throw new HttpError(411, 'LENGTH_REQUIRED', 'an upload needs a Content-Length');
      if (length > maxMb * MiB)
        throw new HttpError(
          413,
          'FILES_TOO_LARGE',
          `the file is larger than this pool allows (${maxMb} MiB)`,
        );
      try {
        const done = await files.upload(name, length, req, (cancel) => {
          req.once('close', () => {
            if (!req.complete) cancel();
          });
        });
        await audit(req, session, 'file.upload', { name: done.name, bytes: done.bytes });
        return done;
      } catch (e) {
        // read the rest of a body the desktop refused, so the browser sees the answer rather
        // than a connection reset (bounded: Content-Length is within the pool's limit)
        if (!req.complete && !req.destroyed) {
          req.resume();
          await new Promise<void>((r) => {
            const t = setTimeout(r, DRAIN_TIMEOUT_MS);
            req.once('end', () => (clearTimeout(t), r()));
            req.once('close', () => (clearTimeout(t), r()));
          });
        }
        await audit(req, session, 'file.upload.failed', {
          name,
          bytes: length,
          error: (e as Error).message,
        });
        throw asHttp(e);
      }
    },
  );
}
