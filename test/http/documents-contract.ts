import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'

// ajv-formats is CommonJS: its default export is the module object under nodenext.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

const BASE = 'https://herald.test/document.json'

/** A JSON Schema whose local references (`#/components/…`) point into the document at BASE. */
function anchored(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(anchored)
  if (typeof schema !== 'object' || schema === null) return schema
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) => [
      key,
      key === '$ref' && typeof value === 'string' && value.startsWith('#') ? BASE + value : anchored(value),
    ]),
  )
}

/**
 * Validates JSON against schemas taken from an API document (OpenAPI 3.1 or AsyncAPI 3.0): JSON
 * Schema 2020-12 (ajv), formats checked, references resolved in the whole document.
 */
export function documentValidator(document: Record<string, unknown>) {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true })
  addFormats(ajv)
  ajv.addSchema({ ...structuredClone(document), $id: BASE })
  const cache = new Map<unknown, ValidateFunction>()
  return {
    compile(schema: unknown): ValidateFunction {
      let validate = cache.get(schema)
      if (validate === undefined) {
        validate = ajv.compile(anchored(schema) as object)
        cache.set(schema, validate)
      }
      return validate
    },
  }
}
