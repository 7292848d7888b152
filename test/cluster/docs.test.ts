import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { ROOT } from '../helpers.ts'
import { nginxSite } from './proxy.ts'

/** docs/deploy.md shows users the nginx configuration the cluster tests run, word for word. */
test('docs/deploy.md shows the nginx configuration the cluster tests use, and the README links it', async () => {
  const deploy = await readFile(join(ROOT, 'docs', 'deploy.md'), 'utf8')
  const site = nginxSite('127.0.0.1:8080', ['127.0.0.1:8081', '127.0.0.1:8082', '127.0.0.1:8083'])
  assert.ok(deploy.includes(`\`\`\`nginx\n${site}\`\`\``), 'the nginx block of docs/deploy.md is nginxSite()')
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  assert.match(readme, /\(docs\/deploy\.md\)/)
})
