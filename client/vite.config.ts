import { defineConfig } from 'vite';

/** The gateway in development (`npm run dev` in server/). */
const BACKEND = 'http://localhost:8080';

export default defineConfig({
  // Config-relative root, so `vite build --config client/vite.config.ts` from the repo root works too.
  root: new URL('.', import.meta.url).pathname,
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      treeshake: {
        // @vdi/shared's index re-exports its zod schemas, and the package does not declare
        // itself side-effect free, so without these two hints every schema (and all of zod,
        // ~95 kB) lands in the bundle even though the client only uses types, the frame
        // codec and the keysym table from it.
        moduleSideEffects: (id) => !/[\\/]shared[\\/]dist[\\/]/.test(id),
        manualPureFunctions: ['z'],
      },
    },
  },
  server: {
    proxy: {
      '/api': BACKEND,
      '/socket.io': { target: BACKEND, ws: true },
    },
  },
});
