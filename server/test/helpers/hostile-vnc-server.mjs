// A malicious VNC server for the hostile-input tests: a small Node program serving a real
// unix socket, the way any desktop user could put one in place of their desktop's socket.
// Plain JavaScript so it runs as its own process with no build step.
//
//   node hostile-vnc-server.mjs <socket path> <scenario>
//
// Each connection gets the RFB 3.8 handshake (security None), a 64x48 desktop and one full
// frame, then the scenario. Prints "listening" once it accepts connections.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import net from 'node:net';
import process from 'node:process';
import { setInterval, setTimeout, clearInterval } from 'node:timers';

const [socketPath, scenario] = process.argv.slice(2);
const W = 64;
const H = 48;
const MiB = 1024 * 1024;

const u16 = (v) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32 = (v) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const rect = (x, y, w, h, encoding) => {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(x, 0);
  b.writeUInt16BE(y, 2);
  b.writeUInt16BE(w, 4);
  b.writeUInt16BE(h, 6);
  b.writeInt32BE(encoding, 8);
  return b;
};
const update = (...rects) => Buffer.concat([Buffer.from([0, 0]), u16(rects.length), ...rects]);
const rawFrame = (w, h, v) =>
  update(Buffer.concat([rect(0, 0, w, h, 0), Buffer.alloc(w * h * 4, v)]));
const desktopSize = (w, h) => update(rect(0, 0, w, h, -223));
const serverInit = (w, h) =>
  Buffer.concat([
    u16(w),
    u16(h),
    Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]),
    u32(7),
    Buffer.from('hostile'),
  ]);
const fenceRequest = () =>
  Buffer.concat([
    Buffer.from([248, 0, 0, 0]),
    u32(0x80000001),
    Buffer.from([64]),
    Buffer.alloc(64, 1),
  ]);
const cutText = (n) => Buffer.concat([Buffer.from([3, 0, 0, 0]), u32(n), Buffer.alloc(n, 0x61)]);

/** Write as fast as the kernel takes it, forever (until the socket closes). */
function blast(socket, message) {
  const chunk = Buffer.concat(
    Array.from({ length: Math.ceil((64 * 1024) / message.length) }, () => message),
  );
  const more = () => {
    while (!socket.destroyed && socket.write(chunk)) {
      /* the kernel took it: write again */
    }
  };
  socket.on('drain', more);
  more();
}

/** Read exactly n bytes (resolves with them). */
function reader(socket) {
  let buf = Buffer.alloc(0);
  let want = 0;
  let done;
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    if (done && buf.length >= want) {
      const out = buf.subarray(0, want);
      buf = buf.subarray(want);
      const d2 = done;
      done = undefined;
      d2(out);
    }
  });
  return (n) =>
    new Promise((resolve) => {
      want = n;
      if (buf.length >= n) {
        const out = buf.subarray(0, n);
        buf = buf.subarray(n);
        resolve(out);
      } else done = resolve;
    });
}

async function serve(socket) {
  socket.on('error', () => undefined);
  const read = reader(socket);
  socket.write('RFB 003.008\n');
  await read(12);
  socket.write(Buffer.from([1, 1]));
  await read(1);
  socket.write(u32(0));
  await read(1); // ClientInit
  if (scenario === 'huge-init') {
    socket.write(serverInit(16384, 16384));
    return;
  }
  socket.write(serverInit(W, H));
  // SetPixelFormat (20), SetEncodings (4 + 4n), FramebufferUpdateRequest (10)
  await read(20);
  const head = await read(4);
  await read(4 * head.readUInt16BE(2));
  await read(10);
  socket.write(rawFrame(W, H, 0x40));
  // let the gateway hand the link to the viewer that asked for it before the harm starts
  await new Promise((resolve) => setTimeout(resolve, 300));

  switch (scenario) {
    case 'no-read-empty-updates':
      socket.pause();
      blast(socket, update());
      break;
    case 'no-read-fences':
      socket.pause();
      blast(socket, fenceRequest());
      break;
    case 'no-read':
      // keeps the link but reads nothing more: what browsers send piles up at the gateway
      setTimeout(() => socket.pause(), 200);
      break;
    case 'clipboard-flood': {
      // 30 clipboards of 10 MiB
      let n = 0;
      const next = () => {
        if (socket.destroyed || n++ >= 30) return;
        if (socket.write(cutText(10 * MiB))) setTimeout(next, 0);
        else socket.once('drain', next);
      };
      next();
      break;
    }
    case 'huge-resize':
      socket.write(desktopSize(16384, 16384));
      break;
    case 'resize-churn': {
      const sizes = [];
      for (let i = 0; i < 200; i++) sizes.push(desktopSize(i % 2 ? 2048 : 2047, 2048));
      socket.write(Buffer.concat(sizes));
      socket.write(update(Buffer.concat([rect(0, 0, 16, 16, 0), Buffer.alloc(16 * 16 * 4, 0x20)])));
      break;
    }
    case 'drip': {
      const msg = rawFrame(W, H, 0x7f);
      let i = 0;
      const t = setInterval(() => {
        if (socket.destroyed || i >= msg.length) return clearInterval(t);
        socket.write(msg.subarray(i, ++i));
      }, 50);
      socket.on('close', () => clearInterval(t));
      break;
    }
    default:
      process.stderr.write(`unknown scenario ${scenario}\n`);
      process.exit(2);
  }
}

try {
  fs.unlinkSync(socketPath);
} catch {
  /* not there */
}
const server = net.createServer((s) => void serve(s));
server.listen(socketPath, () => {
  fs.chmodSync(socketPath, 0o777);
  process.stdout.write('listening\n');
});
process.on('SIGTERM', () => process.exit(0));
