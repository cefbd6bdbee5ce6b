import pino from 'pino';
import { loadConfig, ConfigError } from './config/index.js';
import { createServer } from './app.js';

/** Process entry: config, logger, signals. Everything else is in createServer. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = pino({ level: config.logLevel });
  const server = await createServer(config, { logger: log });
  const port = await server.listen();
  log.info({ port, dataDir: config.dataDir }, `VDI server listening on http://localhost:${port}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down; desktops keep running');
    // the drain window plus time to close; Kubernetes' default grace before SIGKILL is 30 s
    const hard = setTimeout(() => process.exit(1), config.shutdownDrainMs + 20_000);
    hard.unref();
    server.close({ drainMs: config.shutdownDrainMs }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => log.fatal({ err }, 'uncaught exception'));
}

void main();
