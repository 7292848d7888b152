import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import Fastify from 'fastify'
import type { HttpContext } from '../../src/http/context.ts'
import { registerConsoleRoutes } from '../../src/http/routes/console.ts'
import { tempDir } from '../helpers.ts'

const context = {
  config: { publicUrl: 'http://127.0.0.1:8080', apiKey: undefined },
} as unknown as HttpContext

test('without web/dist, GET / says how to build the console', async () => {
  const app = Fastify()
  registerConsoleRoutes(app, context, join(await tempDir(), 'no-dist'))
  const response = await app.inject({ method: 'GET', url: '/' })
  assert.equal(response.statusCode, 200)
  assert.match(response.body, /The console is not built/)
  assert.match(response.body, /npm run build:web/)
  assert.doesNotMatch(response.headers['content-security-policy'] as string, /unsafe-inline/)
  assert.equal(response.headers['x-content-type-options'], 'nosniff')
})

test('a build is served from memory: the page, its assets with their types, nothing else', async () => {
  const dir = await tempDir()
  await mkdir(join(dir, 'assets'))
  await writeFile(
    join(dir, 'index.html'),
    '<!doctype html><script type="module" src="/console/assets/a-1.js"></script>',
  )
  await writeFile(join(dir, 'assets', 'a-1.js'), 'export {}')
  await writeFile(join(dir, 'assets', 'a-1.css'), 'body{}')
  await writeFile(join(dir, 'secret.txt'), 'not served')
  const app = Fastify()
  registerConsoleRoutes(app, context, dir)
  const page = await app.inject({ method: 'GET', url: '/' })
  assert.equal(page.headers['cache-control'], 'no-cache')
  assert.match(page.headers['content-security-policy'] as string, /default-src 'self'/)
  const js = await app.inject({ method: 'GET', url: '/console/assets/a-1.js' })
  assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8')
  assert.match(js.headers['cache-control'] as string, /immutable/)
  const css = await app.inject({ method: 'GET', url: '/console/assets/a-1.css' })
  assert.equal(css.headers['content-type'], 'text/css; charset=utf-8')
  for (const url of ['/console/assets/../secret.txt', '/console/assets/%2e%2e%2fsecret.txt', '/secret.txt']) {
    const response = await app.inject({ method: 'GET', url })
    assert.equal(response.statusCode, 404, url)
  }
})
