// This server for the bench, as its own process: the same wiring as server/dist/main.js
// (config from the environment, createServer, listen, graceful stop on SIGTERM/SIGINT), under a
// command line of its own, so tools that look for `dist/main.js` processes (development
// servers run and restarted by others on this machine) leave the bench's instance alone.
import pino from 'pino';
import { createServer } from '../dist/app.js';
import { loadConfig } from '../dist/config/index.js';

const config = loadConfig();
const log = pino({ level: config.logLevel });
const server = await createServer(config, { logger: log });
const port = await server.listen();
log.info({ port }, 'bench VDI server listening');

let stopping = false;
const stop = (signal) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'bench VDI server stopping');
  setTimeout(() => process.exit(1), 20_000).unref();
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
