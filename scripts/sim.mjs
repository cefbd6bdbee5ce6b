// `npm run sim`: the broker at many hosts' scale on paper — the real broker and store
// (PostgreSQL) with fake providers (server/bench/sim.mjs). Needs a PostgreSQL: --pg=URL, else
// the local one. Options go after `--`, e.g. `npm run sim -- --users=2000 --hosts=20`.
import { build, checkNode, ensureNodeModules } from './setup.mjs';

checkNode();
ensureNodeModules();
build();

const { main } = await import('../server/bench/sim.mjs');
try {
  const report = await main(process.argv.slice(2));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`\n[sim] failed: ${err?.stack ?? err}\n`);
  process.exit(1);
}
