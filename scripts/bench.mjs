// `npm run bench`: this server's viewer against noVNC on the same desktop and workloads
// (server/bench/README.md). Not part of `npm test`. Options go after `--`, e.g.
// `npm run bench -- --seconds=5 --workloads=typing,scrolling`.
import { BENCH_PACKAGES, build, checkNode, ensureNodeModules, ensurePackages } from './setup.mjs';

checkNode();
ensurePackages(BENCH_PACKAGES);
ensureNodeModules();
build();

const { main } = await import('../server/bench/run.mjs');
try {
  await main(process.argv.slice(2));
  process.exit(0);
} catch (err) {
  process.stderr.write(`\n[bench] failed: ${err?.stack ?? err}\n`);
  process.exit(1);
}
