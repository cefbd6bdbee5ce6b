/**
 * Live migration of a VM desktop between members of an LXD cluster (issue 12): the VM is
 * QEMU in a system container (infra/lxd/build-image.sh, VDI_ROLE=vm), the destination a
 * fresh container on the other member started with `-incoming defer`. The steps are the
 * QEMU provider's (qemu/migrate.ts: NBD mirror of the overlay, RAM, pause before the
 * switch); only the way to each side differs. The two containers share no file system and
 * need no network: every socket is reached through LXD's exec API, which LXD forwards to
 * the member running the container — the transport the gateway already uses to reach a
 * desktop on another member.
 *
 * - QMP of either side: an exec of `socat - UNIX-CONNECT:/run/vdi/qmp.sock`.
 * - The migration stream and the disk mirror: in the source container a relay listens on a
 *   unix socket (`socat UNIX-LISTEN:… -`), in the destination one connects to QEMU's
 *   incoming socket or NBD server (`socat - UNIX-CONNECT:…`), and the gateway pipes the two
 *   execs into each other. So the source QEMU connects to a socket of its own container.
 *
 * The destination is named apart from the source (LXD names are unique in a cluster): a
 * desktop's container alternates between its name and that name with `-b`.
 */
import type { Logger } from 'pino';
import type { RfbEndpoint } from '../../rfb/endpoint.js';
import { QmpClient } from '../qemu/qmp-client.js';
import type { MovePlan, MoveSockets } from '../qemu/migrate.js';
import { ProviderError, type DesktopHandle } from '../types.js';
import type { LxdClient } from './client.js';
import { ExecStream } from './exec-stream.js';
import type { LxdHandle } from './spec.js';

/** QMP of a VM inside its container (the image's). */
export const GUEST_QMP_SOCKET = '/run/vdi/qmp.sock';
/** The destination's listeners and the source's relays, inside each container. */
const INCOMING: MoveSockets = {
  state: '/run/vdi/move-state.sock',
  disk: '/run/vdi/move-disk.sock',
};
const OUTGOING: MoveSockets = { state: '/run/vdi/out-state.sock', disk: '/run/vdi/out-disk.sock' };
const GUEST_UID = 1000;
const COMMAND_MS = 15_000;
/** how long a new destination container may take until its QMP answers */
const DESTINATION_READY_MS = 60_000;

/** What the move needs of the LXD provider. */
export interface LxdVmHost {
  client: LxdClient;
  /** create and start the destination container on `member`, from the source's config */
  startDestination(name: string, member: string): Promise<void>;
  remove(name: string, log: Logger): Promise<void>;
  /** once the move stands: the destination no longer starts waiting for a move */
  settle(name: string): Promise<void>;
  endpoint(h: LxdHandle): RfbEndpoint;
}

/** The name a desktop's container takes on its next move. */
export function movedName(current: string, base: string): string {
  return current === base ? `${base.slice(0, 61).replace(/-+$/, '')}-b` : base;
}

/** A byte stream to a program in a container, open (LXD attached every websocket). */
function exec(client: LxdClient, instance: string, command: string[]): Promise<ExecStream> {
  const s = new ExecStream(client, { instance, command, user: GUEST_UID, group: GUEST_UID });
  return new Promise((resolve, reject) => {
    s.once('connect', () => {
      s.off('error', reject);
      // from here on its user listens (QMP, or the relay pair below); until then an error
      // must not go unheard, which would end the process
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Runs a short command in a container and resolves with its output. */
async function run(client: LxdClient, instance: string, command: string[]): Promise<string> {
  const s = await exec(client, instance, command);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.end();
  await new Promise<void>((resolve, reject) => {
    s.once('end', resolve);
    s.once('close', resolve);
    s.once('error', reject);
  });
  return Buffer.concat(chunks).toString('utf8');
}

/** QMP of the VM in a container, through an exec of socat. */
export async function qmpOf(client: LxdClient, instance: string): Promise<QmpClient> {
  const s = await exec(client, instance, ['socat', '-', `UNIX-CONNECT:${GUEST_QMP_SOCKET}`]);
  return QmpClient.over(s, `QMP of ${instance}`, { commandTimeoutMs: COMMAND_MS });
}

export function lxdVmMove(
  host: LxdVmHost,
  job: { desktopId: string; source: LxdHandle; to: string; baseName: string },
): MovePlan {
  const { client } = host;
  const src = job.source;
  const dest: LxdHandle = {
    name: movedName(src.name, job.baseName),
    member: job.to,
    persistent: src.persistent,
  };
  const relays: ExecStream[] = [];
  let created = false;
  const dropRelays = () => {
    for (const r of relays.splice(0)) r.destroy();
  };
  return {
    desktopId: job.desktopId,
    from: src.member,
    to: job.to,
    sourceQmp: () => qmpOf(client, src.name),
    async startDestination() {
      created = true;
      await host.startDestination(dest.name, dest.member);
      // QEMU's QMP socket appears a moment after the container starts
      const deadline = Date.now() + DESTINATION_READY_MS;
      for (;;) {
        try {
          return await qmpOf(client, dest.name);
        } catch (err) {
          if (Date.now() > deadline)
            throw new ProviderError(
              'LXD_VM_NOT_READY',
              `the destination ${dest.name} on ${dest.member} did not answer QMP: ${(err as Error).message}`,
            );
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    listen: INCOMING,
    async link() {
      // both relays of each pair must be attached before bytes flow either way
      const pairs = await Promise.all(
        (['state', 'disk'] as const).map(async (k) => {
          const out = await exec(client, src.name, [
            'socat',
            `UNIX-LISTEN:${OUTGOING[k]},unlink-early,mode=600`,
            '-',
          ]);
          relays.push(out);
          const into = await exec(client, dest.name, ['socat', '-', `UNIX-CONNECT:${INCOMING[k]}`]);
          relays.push(into);
          return [out, into] as const;
        }),
      );
      for (const [out, into] of pairs) {
        // a side that fails ends the other (QEMU then sees its socket close and the move
        // fails); a side that ends does so through pipe(), after what it sent is written
        out.on('error', () => into.destroy());
        into.on('error', () => out.destroy());
        out.pipe(into);
        into.pipe(out);
      }
      const ready = await run(client, src.name, [
        'sh',
        '-c',
        `for i in $(seq 200); do [ -S ${OUTGOING.state} ] && [ -S ${OUTGOING.disk} ] && echo ok && exit 0; sleep 0.05; done`,
      ]);
      if (!ready.includes('ok'))
        throw new Error(`the relays in ${src.name} did not start listening`);
      return OUTGOING;
    },
    destination: () => ({ endpoint: host.endpoint(dest), handle: { ...dest } }),
    async finish(log): Promise<DesktopHandle> {
      dropRelays();
      await host
        .settle(dest.name)
        .catch((err: unknown) => log.warn({ err }, 'the destination keeps its move setting'));
      await host
        .remove(src.name, log)
        .catch((err: unknown) => log.error({ err }, 'the source container could not be removed'));
      return { ...dest };
    },
    async abandon(log) {
      dropRelays();
      if (created) await host.remove(dest.name, log);
    },
  };
}
