// Checks the import structure of the workspaces: no circle between source files, and in
// server/src no import from a lower layer to a higher one (docs/architecture.md, "Layers").
// Plain Node, no dependencies; run by `npm test` (and `npm run check:layers`).
//
// Usage: node scripts/check-layers.mjs [--print]   (--print lists each file's layer)
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

/**
 * server/src, bottom to top. A file may import from its own layer and the layers below it;
 * a folder listed here holds every file under it. The first matching prefix wins.
 */
export const SERVER_LAYERS = [
  ['clock.ts', 'config/', 'metrics.ts'], // 0: time, settings, the metrics registry
  ['rfb/'], // 1: the RFB protocol, knows nothing of desktops or viewers
  ['store/', 'audit/'], // 2: persistence
  ['providers/', 'stream/'], // 3: desktops (start, find, health) and their pixel streams
  ['broker/'], // 4: pools, assignment, lifecycle
  ['auth/'], // 5: accounts and sign-in
  ['gateway/', 'api/'], // 6: the two front doors: Socket.IO viewers and REST
  ['app.ts'], // 7: wiring
  ['main.ts'], // 8: process entry
];

/** Workspaces whose source files must not import each other in a circle. */
const SOURCE_DIRS = ['server/src', 'client/src', 'shared/src'];

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]/g;
const DYNAMIC_IMPORT_RE = /import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function listFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(p));
    else if (/\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/**
 * The source file a relative specifier names (`./x.js` is written for `./x.ts`; Vite's
 * `./x.ts?worker&url` names `./x.ts`).
 */
function resolveImport(from, spec) {
  const base = path.resolve(path.dirname(from), spec.replace(/\?.*$/, ''));
  const candidates = [
    base,
    base.replace(/\.js$/, '.ts'),
    base.replace(/\.mjs$/, '.mts'),
    `${base}.ts`,
    path.join(base, 'index.ts'),
  ];
  return candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
}

function importsOf(file) {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(IMPORT_RE), ...text.matchAll(DYNAMIC_IMPORT_RE)].map((m) => m[1]);
  return specs.map((s) => ({ spec: s, target: resolveImport(file, s) }));
}

export function layerOf(relToServerSrc) {
  const rel = relToServerSrc.split(path.sep).join('/');
  for (let i = 0; i < SERVER_LAYERS.length; i++)
    if (SERVER_LAYERS[i].some((p) => (p.endsWith('/') ? rel.startsWith(p) : rel === p))) return i;
  return undefined;
}

/** Strongly connected components with more than one file (Tarjan). */
function circles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? new Set()).has(v)) out.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

export function check() {
  const problems = [];
  const graph = new Map();
  const serverSrc = path.join(root, 'server/src');
  const layerRows = [];
  for (const dir of SOURCE_DIRS) {
    const abs = path.join(root, dir);
    if (!fs.existsSync(abs)) continue;
    for (const file of listFiles(abs)) {
      const rel = path.relative(root, file);
      const targets = new Set();
      for (const { spec, target } of importsOf(file)) {
        if (!target) {
          problems.push(`${rel}: cannot resolve import '${spec}'`);
          continue;
        }
        targets.add(path.relative(root, target));
      }
      graph.set(rel, targets);
      if (dir !== 'server/src') continue;
      const fromLayer = layerOf(path.relative(serverSrc, file));
      layerRows.push([fromLayer, rel]);
      if (fromLayer === undefined) {
        problems.push(`${rel}: not in any layer of SERVER_LAYERS (scripts/check-layers.mjs)`);
        continue;
      }
      for (const t of targets) {
        const toLayer = layerOf(path.relative(serverSrc, path.join(root, t)));
        if (toLayer !== undefined && toLayer > fromLayer)
          problems.push(
            `${rel} (layer ${fromLayer}) imports ${t} (layer ${toLayer}): an import that runs back up`,
          );
      }
    }
  }
  for (const comp of circles(graph)) problems.push(`circle: ${comp.join(' -> ')}`);
  return { problems, layerRows };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { problems, layerRows } = check();
  if (process.argv.includes('--print'))
    for (const [l, f] of layerRows.sort((a, b) => (a[0] ?? -1) - (b[0] ?? -1)))
      process.stdout.write(`${l ?? '?'}  ${f}\n`);
  if (problems.length > 0) {
    process.stderr.write(`import structure: ${problems.length} problem(s)\n`);
    for (const p of problems) process.stderr.write(`  ${p}\n`);
    process.exit(1);
  }
  process.stdout.write('import structure: layered, no circles\n');
}
