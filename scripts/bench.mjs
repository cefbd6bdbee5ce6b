// `npm run bench`: this server's viewer against noVNC on the same desktop and workloads
// (server/bench/README.md). Not part of `npm test`. Options go after `--`, e.g.
// `npm run bench -- --seconds=5 --workloads=typing,scrolling`.
import { BENCH_PACKAGES, build, checkNode, ensureNodeModules, ensurePackages } from './setup.mjs';

checkNode();
ensurePackages(BENCH_PACKAGES);
ensureNodeModules();
build();

if (process.argv[2] === 'capacity') {
  // desktops with a typing user per core (server/bench/capacity.mjs)
  const { capacity } = await import('../server/bench/capacity.mjs');
  try {
    await capacity(process.argv.slice(3));
    process.exit(0);
  } catch (err) {
    process.stderr.write(`\n[bench] capacity failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  }
}

const { main } = await import('../server/bench/run.mjs');
try {
  const run = await main(process.argv.slice(2));
  const failed = run.results.filter((r) => r.error).length;
  if (failed) process.stderr.write(`\n[bench] ${failed} measurement(s) failed (see the table)\n`);
  process.exit(failed ? 2 : 0);
} catch (err) {
  process.stderr.write(`\n[bench] failed: ${err?.stack ?? err}\n`);
  process.exit(1);
}
