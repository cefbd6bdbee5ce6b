// A browser that pastes huge clipboards as fast as it can, as its own process (so its own
// buffers are not counted as the server's): attaches to a session and sends `count` clipboard
// events of `size` characters, then prints what the server said and exits.
//
//   node clipboard-flooder.mjs <url> <cookie> <sessionId> <count> <size>
import process from 'node:process';
import { setTimeout } from 'node:timers/promises';
import { io } from 'socket.io-client';
import { vdiParser } from '@vdi/shared';

const [url, cookie, sessionId, count, size] = process.argv.slice(2);
const socket = io(url, {
  parser: vdiParser,
  transports: ['websocket'],
  extraHeaders: { cookie },
  reconnection: false,
  forceNew: true,
});
const errors = {};
const lost = [];
socket.on('error', (e) => (errors[e.code] = (errors[e.code] ?? 0) + 1));
socket.on('session', (m) => m.state === 'desktop-lost' && lost.push(m.reason));
socket.on('frame', () => undefined);
await new Promise((resolve, reject) => {
  socket.once('connect', resolve);
  socket.once('connect_error', reject);
});
const r = await socket.timeout(30_000).emitWithAck('attach', { sessionId });
if (!r.ok) {
  process.stdout.write(JSON.stringify({ attach: r }) + '\n');
  process.exit(1);
}
await setTimeout(300); // the desktop has stopped reading by now
const text = 'c'.repeat(Number(size));
for (let i = 0; i < Number(count); i++) {
  socket.emit('clipboard', { text });
  // let the socket write what it has before encoding more (this process's memory, not the server's)
  if (i % 10 === 9) await setTimeout(20);
}
const deadline = Date.now() + 30_000;
while (lost.length === 0 && Date.now() < deadline) await setTimeout(50);
process.stdout.write(JSON.stringify({ errors, lost }) + '\n');
socket.close();
process.exit(0);
