import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { errors, HeraldError } from '../../src/core/errors.ts'
import { ROOT } from '../helpers.ts'

test('docs/errors.md lists exactly the codes and statuses of the catalogue', async () => {
  const doc = await readFile(join(ROOT, 'docs', 'errors.md'), 'utf8')
  const documented = [...doc.matchAll(/^\| `([a-z-]+)`\s*\| (\d{3})\s*\|/gm)]
    .map((m) => `${m[1]} ${m[2]}`)
    .sort()
  const catalogue = Object.values(errors)
    .map((factory) => `${factory.code} ${factory.status}`)
    .sort()
  assert.deepEqual(documented, catalogue)
})

test('a catalogue error renders as RFC 9457 problem details', () => {
  const error = errors.invalidEvent('"type" is required.', 'type')
  assert.ok(error instanceof HeraldError)
  assert.deepEqual(error.toProblem(), {
    type: 'urn:herald:problem:invalid-event',
    title: 'Invalid event',
    status: 422,
    detail: '"type" is required.',
    code: 'invalid-event',
    field: 'type',
  })
  assert.equal('field' in errors.internal('x').toProblem(), false)
})
