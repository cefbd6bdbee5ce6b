/**
 * A loopback TCP proxy that can turn into a silent network black hole: it stops forwarding
 * both ways without closing anything, as a dead route or a dropped Wi-Fi does. What was held
 * is delivered once it forwards again (TCP would retransmit it), so a short hole looks to both
 * ends like a stall, not like lost bytes. Only ever listens on and connects to 127.0.0.1.
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  held: boolean;
}

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  /** connections opened from now on are held too */
  private holdNew = false;
  /** connections accepted so far */
  accepted = 0;

  constructor(private targetPort: number) {
    this.server = net.createServer((client) => this.onClient(client));
  }

  /** listen on 127.0.0.1, port 0 unless given; resolves with the port */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** the connections currently open through the proxy */
  get open(): number {
    return this.pairs.size;
  }

  /**
   * Stop forwarding, both ways, on the open connections; with `newConnections`, also on the
   * ones opened from now on (a black hole on the route, not only on the old flows).
   */
  blackhole({ newConnections = true }: { newConnections?: boolean } = {}): void {
    this.holdNew = newConnections;
    for (const p of this.pairs) this.hold(p);
  }

  /** forward again, on every connection */
  restore(): void {
    this.holdNew = false;
    for (const p of this.pairs) {
      p.held = false;
      p.client.resume();
      p.upstream.resume();
    }
  }

  close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
    return new Promise((r) => this.server.close(() => r()));
  }

  private hold(p: Pair): void {
    p.held = true;
    p.client.pause();
    p.upstream.pause();
  }

  private onClient(client: net.Socket): void {
    this.accepted++;
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, held: false };
    this.pairs.add(pair);
    if (this.holdNew) this.hold(pair);
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on('data', (chunk) => {
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => {
        if (!pair.held) from.resume();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }
}
