// `npm start`: install what is missing, build, serve on http://localhost:8080.
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
  RUNTIME_PACKAGES,
  build,
  checkNode,
  ensureNodeModules,
  ensurePackages,
  root,
} from './setup.mjs';

checkNode();
ensurePackages(RUNTIME_PACKAGES);
ensureNodeModules();
build();

const child = spawn(process.execPath, [path.join(root, 'server', 'dist', 'main.js')], {
  stdio: 'inherit',
  cwd: root,
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
