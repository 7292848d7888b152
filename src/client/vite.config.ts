import { join } from 'node:path'
import { defineConfig } from 'vite'

// The client (src/client) built into web/dist-client: client.js (one ES module, served at
// GET /v1/client.js and exported as herald/client) and webhooks.js (Node only: node:crypto).
export default defineConfig({
  logLevel: 'warn',
  build: {
    outDir: join(import.meta.dirname, '..', '..', 'web', 'dist-client'),
    emptyOutDir: true,
    target: 'es2022',
    minify: true,
    lib: {
      entry: {
        client: join(import.meta.dirname, 'index.ts'),
        webhooks: join(import.meta.dirname, 'webhooks.ts'),
      },
      formats: ['es'],
    },
    // Lib mode keeps whitespace in ES output (for tree-shaking downstream); this is a served file.
    rolldownOptions: { external: [/^node:/], output: { minify: true } },
  },
})
