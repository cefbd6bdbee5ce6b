import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ADMIN, until } from './server.js';

const MAIN = path.resolve(import.meta.dirname, '../../dist/main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
    s.on('error', reject);
  });
}

/** Runs `fn` on a read-only connection to the SQLite store of the server using `dataDir`. */
export function readStore<T>(dataDir: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path.join(dataDir, 'vdi.sqlite'), {
    readonly: true,
    fileMustExist: true,
  });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** the server processes started and not yet stopped: a failed e2e step prints their logs */
export const runningServers = new Set<ServerProcess>();

/**
 * The real server as its own process (`node server/dist/main.js`), so a test can kill and
 * restart it the way an operator would. Desktops it started survive its exit.
 */
export class ServerProcess {
  child: ChildProcess | undefined;
  output = '';

  constructor(
    readonly port: number,
    readonly env: Record<string, string>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.output = '';
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        PORT: String(this.port),
        HOST: '127.0.0.1',
        VDI_ADMIN_USER: ADMIN.username,
        VDI_ADMIN_PASSWORD: ADMIN.password,
        LOG_LEVEL: 'info',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    runningServers.add(this);
    child.once('exit', () => runningServers.delete(this));
    child.stdout.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (this.output += d.toString()));
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`server exited: ${this.output.slice(-2000)}`);
        const r = await fetch(`${this.url}/readyz`).catch(() => undefined);
        return r?.status === 200;
      },
      30_000,
      'server ready',
    );
  }

  /** SIGTERM (graceful) or SIGKILL (crash); resolves when the process is gone */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await gone;
  }
}

/**
 * Server processes "node-1" … "node-N" on one environment (one database, one Redis), started
 * one after the other: the first creates the admin account (and the default pool, if any).
 */
export async function startNodes(env: Record<string, string>, count = 2): Promise<ServerProcess[]> {
  const nodes: ServerProcess[] = [];
  for (let i = 1; i <= count; i++)
    nodes.push(new ServerProcess(await freePort(), { ...env, NODE_ID: `node-${i}` }));
  try {
    for (const n of nodes) await n.start();
  } catch (err) {
    // the caller never gets them to stop: those that did start end here
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  return nodes;
}
