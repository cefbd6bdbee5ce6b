// `npm test`: every test, browser end-to-end tests included, on a fresh Debian machine.
import path from 'node:path';
import {
  RUNTIME_PACKAGES,
  TEST_PACKAGES,
  build,
  checkNode,
  ensureNodeModules,
  ensurePackages,
  root,
  run,
} from './setup.mjs';
import { ensureTestServices, stopTestServices } from './test-services.mjs';

checkNode();
ensurePackages([...RUNTIME_PACKAGES, ...TEST_PACKAGES]);
ensureNodeModules();
build();

const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const started = Date.now();
const step = (title, cmd, args) => {
  process.stdout.write(`\n=== ${title} ===\n`);
  run(cmd, args);
};
step('format', bin('prettier'), ['--check', '.']);
step('import structure (layers, circles)', process.execPath, [
  path.join(root, 'scripts', 'check-layers.mjs'),
]);
step('lint and typecheck', bin('turbo'), ['run', 'lint', 'typecheck', '--output-logs=errors-only']);
// PostgreSQL and Redis for the several-node tests: the local ones, else private ones
await ensureTestServices();
process.on('exit', stopTestServices);
step('unit and integration tests', bin('turbo'), ['run', 'test', '--concurrency=1']);
step('end-to-end tests (Chromium)', bin('turbo'), ['run', 'test:e2e', '--concurrency=1']);
process.stdout.write(`\nall tests passed in ${Math.round((Date.now() - started) / 1000)} s\n`);
