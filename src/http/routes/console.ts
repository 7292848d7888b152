import { readdirSync, readFileSync, statSync } from 'node:fs'
import { extname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import type { HttpContext } from '../context.ts'
import { schemas } from '../schemas/routes.ts'
import { homePage } from './home.ts'

/** Where `npm ci` (the `prepare` script, `vite build`) writes the console. */
export const CONSOLE_DIST = join(import.meta.dirname, '..', '..', '..', 'web', 'dist')

/** The console's files are small; more than this in web/dist is not a console build. */
const MAX_TOTAL_BYTES = 8 * 1024 * 1024
const MAX_FILES = 200

/**
 * The page's policy: everything from this origin, nothing inline (Vite emits external scripts and
 * styles), no framing, no forms posted elsewhere. The API key lives in session storage and goes in
 * `Authorization`, so there is no cookie to protect from CSRF.
 */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
}

export interface ConsoleFiles {
  index: Buffer
  /** By name under assets/ (hashed by Vite, so cached for good). */
  assets: Map<string, { body: Buffer; type: string }>
}

/**
 * Reads a console build into memory: index.html and the files directly under assets/, nothing else
 * (bounded in count and size). Undefined when there is no build.
 */
export function loadConsole(dir: string = CONSOLE_DIST): ConsoleFiles | undefined {
  let index: Buffer
  try {
    index = readFileSync(join(dir, 'index.html'))
  } catch {
    return undefined
  }
  const assets = new Map<string, { body: Buffer; type: string }>()
  let total = index.length
  let names: string[] = []
  try {
    names = readdirSync(join(dir, 'assets'))
  } catch {
    // A build without assets: only the page.
  }
  for (const name of names.slice(0, MAX_FILES)) {
    const path = join(dir, 'assets', name)
    const stat = statSync(path)
    if (!stat.isFile()) continue
    total += stat.size
    if (total > MAX_TOTAL_BYTES)
      throw new Error(`${dir} holds more than ${MAX_TOTAL_BYTES} bytes: not a console build`)
    assets.set(name, { body: readFileSync(path), type: TYPES[extname(name)] ?? 'application/octet-stream' })
  }
  return { index, assets }
}

/**
 * `GET /`: the console (web/, built into web/dist), served from memory; its hashed files under
 * `/console/assets/`. Public, because the page holds nothing stored: it asks the API for everything
 * with the user's own key. Without a build, `GET /` says how to make one.
 */
export function registerConsoleRoutes(
  app: FastifyInstance,
  { config }: HttpContext,
  /** Where the build is (a test names another directory). */
  dir: string = CONSOLE_DIST,
): void {
  const files = loadConsole(dir)
  const PUBLIC = { config: { right: 'public' } } as const
  if (files === undefined) {
    const page = homePage(config.publicUrl, config.apiKey !== undefined)
    app.get('/', { ...PUBLIC, schema: schemas.console }, async (_request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('content-security-policy', "default-src 'none'; frame-ancestors 'none'")
        .header('x-content-type-options', 'nosniff')
        .send(page),
    )
    return
  }
  const { index, assets } = files
  app.get('/', { ...PUBLIC, schema: schemas.console }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(index),
  )
  app.get('/console/assets/*', { ...PUBLIC, schema: schemas.consoleAsset }, async (request, reply) => {
    const name = (request.params as { '*': string })['*']
    const asset = assets.get(name)
    if (asset === undefined) throw errors.notFound(`The console has no file ${name.slice(0, 100)}.`)
    return reply
      .type(asset.type)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .header('x-content-type-options', 'nosniff')
      .send(asset.body)
  })
}
