import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config/index.js';
import { DEFAULT_MIGRATION } from '../qemu/migrate.js';
import { LxdClient, type LxdConnection } from './client.js';
import { LxdProvider } from './provider.js';

/**
 * The lxd provider as the server's config describes it: LXD's unix socket on this host, or a
 * remote member over HTTPS with a client certificate. Building it needs no LXD: `npm start`
 * runs without one and the provider's status says why it cannot start desktops.
 */
export function lxdProviderFromConfig(config: Config): LxdProvider {
  const { remote, socket, member } = config.lxd;
  let connection: LxdConnection = { kind: 'unix', socketPath: socket };
  if (remote !== undefined) {
    connection = {
      kind: 'https',
      url: remote.url,
      cert: fs.readFileSync(remote.certFile, 'utf8'),
      key: fs.readFileSync(remote.keyFile, 'utf8'),
      serverCert: fs.readFileSync(remote.serverCertFile, 'utf8'),
    };
  }
  return new LxdProvider({
    client: new LxdClient(connection),
    runDir: path.join(config.runDir, 'lxd'),
    ...(member !== undefined ? { localMember: member } : {}),
    nodeName: config.node.host,
    migration: {
      ...DEFAULT_MIGRATION,
      maxBandwidthBytes: config.migration.maxBandwidthBytes,
      downtimeLimitMs: config.migration.downtimeLimitMs,
      postcopy: config.migration.postcopy,
    },
  });
}
