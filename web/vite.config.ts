import { defineConfig } from 'vite'

// The console: web/src (Preact, TSX) built into web/dist, which Herald serves at GET / with its hashed
// files under /console/assets/. Nothing inline (the page's CSP has no 'unsafe-inline').
export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
})
