import { z } from 'zod';
import {
  DrainBody,
  DrainResult,
  HostList,
  HostName,
  MoveBody,
  MoveResult,
  PowerBody,
  SnapshotName,
} from '@vdi/shared';
import { actorOf } from '../actor.js';
import { IdParam, type AdminScope } from './scope.js';

/**
 * One desktop: its thumbnail, a VM's power actions, snapshots and moves to another host;
 * hosts and draining them (all through the broker).
 */
export function adminDesktopRoutes(admin: AdminScope): void {
  const { broker, live } = admin.deps;

  admin.route(
    {
      method: 'get',
      path: '/desktops/:id/thumbnail',
      summary: 'A small JPEG of the desktop',
      produces: 'image/jpeg',
    },
    async (req, res) => {
      const { id } = IdParam.parse(req.params);
      const jpeg = await broker.viewDesktop(id, (endpoint) => live.thumbnail(id, endpoint));
      res.setHeader('Content-Type', 'image/jpeg');
      res.setHeader('Cache-Control', 'no-store');
      res.end(jpeg);
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/desktops/:id/power',
      summary: 'Power action on a VM desktop',
      body: PowerBody,
    },
    async (req) => {
      await broker.power(IdParam.parse(req.params).id, req.parsedBody.action, actorOf(req));
    },
  );

  admin.route(
    {
      method: 'get',
      path: '/desktops/:id/snapshots',
      summary: 'Snapshots of a VM desktop',
      response: z.array(z.string()),
    },
    async (req) => broker.snapshots(IdParam.parse(req.params).id),
  );

  admin.route(
    {
      method: 'post',
      path: '/desktops/:id/snapshots',
      summary: 'Take a snapshot',
      body: z.strictObject({ name: SnapshotName }),
    },
    async (req) => {
      await broker.takeSnapshot(IdParam.parse(req.params).id, req.parsedBody.name, actorOf(req));
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/desktops/:id/snapshots/:name/restore',
      summary: 'Restore a snapshot',
    },
    async (req) => {
      const { id } = IdParam.parse(req.params);
      await broker.restoreSnapshot(id, SnapshotName.parse(req.params.name), actorOf(req));
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/desktops/:id/move',
      summary: 'Live-migrate a running VM desktop to another host; its viewers stay attached',
      body: MoveBody,
      response: MoveResult,
    },
    async (req) =>
      broker.moveDesktop(IdParam.parse(req.params).id, req.parsedBody.host, actorOf(req)),
  );

  admin.route(
    {
      method: 'get',
      path: '/hosts/move-targets',
      summary:
        'The hosts VM desktops can be moved to, and which is this server; ?desktop=ID: where that desktop can move (an LXD VM desktop: the cluster members online) and where it runs',
      response: HostList,
    },
    async (req) => {
      const desktop = req.query.desktop;
      if (typeof desktop !== 'string' || desktop === '')
        return { self: broker.hostName, hosts: [...broker.moveTargets] };
      const t = await broker.moveTargetsFor(IdParam.parse({ id: desktop }).id);
      return { self: broker.hostName, ...t };
    },
  );

  admin.route(
    {
      method: 'post',
      path: '/hosts/:host/drain',
      summary: 'Move every running VM desktop off a host, a few at a time',
      body: DrainBody,
      response: DrainResult,
    },
    async (req) =>
      broker.drainHost(HostName.parse(req.params.host), req.parsedBody.to, actorOf(req)),
  );
}
