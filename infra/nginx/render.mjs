// Fills in infra/nginx/vdi.conf.template: the nginx prefix (pid, logs, temp files), the
// address to listen on and the gateway nodes. Used by `npm run cluster` and the node-loss test.
import fs from 'node:fs';
import path from 'node:path';

const TEMPLATE = path.join(import.meta.dirname, 'vdi.conf.template');

/**
 * @param {{ prefix: string, listen: string, nodes: string[], maxFails?: number, failTimeoutSec?: number }} o
 *   nodes: host:port of each gateway node
 * @returns {string} the nginx.conf text
 */
export function renderNginxConfig(o) {
  const upstreams = o.nodes
    .map(
      (n) => `    server ${n} max_fails=${o.maxFails ?? 1} fail_timeout=${o.failTimeoutSec ?? 2}s;`,
    )
    .join('\n');
  return fs
    .readFileSync(TEMPLATE, 'utf8')
    .replaceAll('@PREFIX@', o.prefix)
    .replaceAll('@LISTEN@', o.listen)
    .replaceAll('@UPSTREAMS@', upstreams);
}
