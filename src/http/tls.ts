import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Http2SecureServer } from 'node:http2'
import { createSecureContext } from 'node:tls'
import type { FastifyBaseLogger } from 'fastify'
import { ConfigError, type TlsFiles } from '../config/config.ts'

/** The PEM texts of a certificate and its key, as `https` / `http2.createSecureServer` take them. */
export interface TlsMaterial {
  cert: Buffer
  key: Buffer
}

/**
 * Reads --tls-cert and --tls-key and checks that they make a usable pair (a TLS context is built
 * from them, which fails on a missing file, a bad PEM, or a key that is not the certificate's).
 * The error says which file and why, never what the key holds.
 */
export function readTls(files: TlsFiles): TlsMaterial {
  const cert = readPemFile(files.certFile, '--tls-cert')
  const key = readPemFile(files.keyFile, '--tls-key')
  try {
    createSecureContext({ cert, key })
  } catch (error) {
    const code = (error as { code?: string }).code
    throw new ConfigError(
      `Invalid --tls-cert/--tls-key: ${files.certFile} and ${files.keyFile} do not make a usable ` +
        `certificate and key (${code ?? 'unreadable PEM'}).`,
    )
  }
  return { cert, key }
}

function readPemFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path)
  } catch (error) {
    const code = (error as { code?: string }).code
    throw new ConfigError(`Invalid ${flag}: ${path} cannot be read (${code ?? (error as Error).message}).`)
  }
}

/** The SHA-256 fingerprint of a certificate (the first of a chain), to log which one is served. */
export function fingerprintOf(material: TlsMaterial): string | undefined {
  try {
    return new X509Certificate(material.cert).fingerprint256
  } catch {
    return undefined
  }
}

/**
 * Reads the files again and has the server present them to new handshakes; open connections keep
 * the certificate they were made with. A failed read keeps the certificate served now (and logs why):
 * a reload never leaves the server without one.
 */
export function reloadTls(
  server: Http2SecureServer,
  files: TlsFiles,
  logger: Pick<FastifyBaseLogger, 'info' | 'error'>,
): boolean {
  let material: TlsMaterial
  try {
    material = readTls(files)
  } catch (error) {
    logger.error(
      { reason: (error as Error).message },
      'TLS reload failed: the certificate served until now is kept',
    )
    return false
  }
  server.setSecureContext({ cert: material.cert, key: material.key })
  logger.info({ fingerprint: fingerprintOf(material) }, 'TLS certificate reloaded')
  return true
}
