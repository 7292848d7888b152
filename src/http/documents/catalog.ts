import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { EventTypeVersion } from '../../event-types/catalog.ts'
import type { JsonSchema } from '../schemas/common.ts'

/** Herald's version, as package.json says it (the documents' `info.version`). */
export const HERALD_VERSION: string = (
  JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string
  }
).version

/** The latest version of each type, by type name (the catalog may list several versions of one). */
export function latestVersions(catalog: readonly EventTypeVersion[]): EventTypeVersion[] {
  const latest = new Map<string, EventTypeVersion>()
  for (const entry of catalog) {
    const known = latest.get(entry.type)
    if (known === undefined || entry.version > known.version) latest.set(entry.type, entry)
  }
  return [...latest.values()].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
}

/**
 * A name for each type fit for a components key (`^[a-zA-Z0-9._-]+$`, as both specifications ask),
 * distinct even when two type names differ only in characters that are replaced.
 */
export function componentNames(types: readonly string[]): Map<string, string> {
  const names = new Map<string, string>()
  const taken = new Set<string>()
  for (const type of types) {
    const base = type.replace(/[^A-Za-z0-9._-]/g, '_') || '_'
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base}_${n}`
    taken.add(name)
    names.set(type, name)
  }
  return names
}

/**
 * A registered schema made fit to sit at `pointer` inside a larger document: its own local references
 * (`#/$defs/…`) are rewritten to point under `pointer`, and `$id` and `$schema` are dropped (its
 * references are then resolved against the document, where they now point to the right place).
 */
export function embedSchema(schema: Record<string, unknown>, pointer: string): JsonSchema {
  const walk = (value: unknown, root: boolean): unknown => {
    if (Array.isArray(value)) return value.map((item) => walk(item, false))
    if (typeof value !== 'object' || value === null) return value
    const out: Record<string, unknown> = {}
    for (const [key, child] of Object.entries(value)) {
      if (root && (key === '$id' || key === '$schema')) continue
      if ((key === '$ref' || key === '$dynamicRef') && typeof child === 'string' && child.startsWith('#')) {
        out[key] = child === '#' ? pointer : child.startsWith('#/') ? pointer + child.slice(1) : child
        continue
      }
      out[key] = walk(child, false)
    }
    return out
  }
  return walk(schema, true) as JsonSchema
}
