/**
 * Scripted TCP servers on 127.0.0.1, port 0, for tests of code that connects to a server
 * (probes, the vnc provider): each connection gets the test's `onConn`; `close()` ends them
 * all (call it after each test).
 */
import net from 'node:net';

export class LoopbackServers {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  /** A server that does `onConn` with each connection; resolves with its port. */
  async serve(onConn: (s: net.Socket) => void): Promise<number> {
    const server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      onConn(s);
    });
    this.servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
  }
}

/** A port that nothing listens on: bind, note it, close. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
