// The parts of the system a profiled JavaScript function belongs to, by its script's URL or
// path, and how a script is named in the tables: shared by profile-summary.mjs (V8 CPU profiles) and perf-summary.mjs (`perf script`).

const RULES = [
  [/\/dist\/stream\/video\//, 'stream: video mode'],
  [/\/dist\/stream\//, 'stream (mirror, damage, plan, encode, frame)'],
  [/\/dist\/rfb\//, 'RFB link (read, parse, decode)'],
  [/\/dist\/gateway\//, 'gateway (sockets, input, acks)'],
  [/\/dist\/broker\/|\/dist\/store\/|kysely|better-sqlite3/, 'broker and store'],
  [/socket\.io|engine\.io/, 'Socket.IO / Engine.IO'],
  [/node_modules\/ws\//, 'ws (WebSocket)'],
  [/zlib/, 'zlib (node)'],
  [
    /node:net|node:stream|internal\/streams|node:internal\/stream_base|node:buffer/,
    'node streams, net, buffers',
  ],
  [/node:internal\/timers|node:timers/, 'timers'],
  [/sharp/, 'sharp (JPEG/PNG)'],
  [/pino/, 'logging'],
  [/prom-client/, 'metrics (prom-client)'],
  [/\/zod\//, 'validation (zod)'],
];

/** the part a script belongs to; undefined when no rule names it */
export function partOfScript(url) {
  for (const [re, name] of RULES) if (re.test(url)) return name;
  return undefined;
}

/**
 * A script's URL or path, short: a package's files from its name on
 * (`node_modules/socket.io/dist/socket.js`), the project's from `dist/`.
 */
export const shortUrl = (url) =>
  url
    .replace(/^.*\/node_modules\//, 'node_modules/')
    .replace(/^(?!node_modules\/).*\/dist\//, 'dist/')
    .replace(/^file:\/\//, '');
