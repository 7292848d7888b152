/**
 * The SSRF guard for outbound webhook and WebSub requests. A target URL is checked when it is
 * registered (scheme, credentials, IP literal, `localhost`, then every address its name resolves to),
 * and again at every connection: the guarded agent refuses an address that DNS returns later (DNS
 * rebinding), so a name cannot be pointed at the metadata service after it passed the first check.
 * HERALD_ALLOW_PRIVATE_TARGETS=true lifts the address rules, never the scheme or credential rules.
 */
import type { LookupAddress } from 'node:dns'
import { lookup } from 'node:dns/promises'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { Agent, buildConnector } from 'undici'
import { errors, type HeraldError } from '../core/errors.ts'
import { ipv6Groups } from '../core/ipv6.ts'

/**
 * The longest URL Herald stores and calls (a webhook's target_url, WebSub's hub.callback and topic
 * URLs): what browsers and servers commonly take, far beyond what a real endpoint needs.
 */
export const MAX_URL_LENGTH = 2048

/** Resolves a host name to every address it has; injectable so tests can fake DNS. */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>

const resolveAll: Resolver = (hostname) => lookup(hostname, { all: true, order: 'verbatim' })

/** Address ranges Herald refuses, most specific first so the reason names the narrowest one. */
const RANGES: Array<[reason: string, cidrs: string[]]> = [
  ['a cloud metadata address', ['169.254.169.254/32', '100.100.100.200/32', 'fd00:ec2::254/128']],
  ['the unspecified ("this network") address', ['0.0.0.0/8', '::/128']],
  ['a loopback address', ['127.0.0.0/8', '::1/128']],
  ['a private address', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']],
  ['a shared (CGNAT) address', ['100.64.0.0/10']],
  ['a link-local address', ['169.254.0.0/16', 'fe80::/10']],
  ['a multicast address', ['224.0.0.0/4', 'ff00::/8']],
  ['the broadcast address', ['255.255.255.255/32']],
  [
    'a reserved address',
    ['240.0.0.0/4', '192.0.0.0/24', '198.18.0.0/15', 'fec0::/10', '100::/64', '64:ff9b:1::/48'],
  ],
  ['a documentation address', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32']],
]

function blockList(cidrs: string[]): BlockList {
  const list = new BlockList()
  for (const cidr of cidrs) {
    const [network, prefix] = cidr.split('/') as [string, string]
    list.addSubnet(network, Number(prefix), network.includes(':') ? 'ipv6' : 'ipv4')
  }
  return list
}

const REFUSED = RANGES.map(([reason, cidrs]) => [reason, blockList(cidrs)] as const)

/**
 * IPv6 forms that carry an IPv4 address, and where it sits (as two 16-bit groups). BlockList already
 * sees through ::ffff:a.b.c.d; the others would reach a private v4 host through a translator or tunnel.
 */
const EMBEDDINGS: Array<[form: string, list: BlockList, v4: (g: number[]) => [number, number]]> = [
  ['IPv4-mapped', blockList(['::ffff:0:0/96']), (g) => [g[6]!, g[7]!]],
  ['IPv4-translated', blockList(['::ffff:0:0:0/96']), (g) => [g[6]!, g[7]!]],
  ['IPv4-compatible', blockList(['::/96']), (g) => [g[6]!, g[7]!]],
  ['NAT64', blockList(['64:ff9b::/96']), (g) => [g[6]!, g[7]!]],
  ['6to4', blockList(['2002::/16']), (g) => [g[1]!, g[2]!]],
  ['Teredo', blockList(['2001::/32']), (g) => [g[6]! ^ 0xffff, g[7]! ^ 0xffff]], // client address, inverted
]

/**
 * Why Herald refuses to connect to this IP address ("a loopback address", …), or undefined when it
 * is a public address. Anything that is not an IP address is refused.
 */
export function refusalReason(address: string): string | undefined {
  const ip = address.replace(/%.*$/, '') // a zone id (fe80::1%eth0) does not change the range
  const family = isIP(ip)
  if (family === 0) return 'not an IP address'
  const type = family === 4 ? 'ipv4' : 'ipv6'
  for (const [reason, list] of REFUSED) if (list.check(ip, type)) return reason
  if (family === 4) return undefined
  for (const [form, list, v4] of EMBEDDINGS) {
    if (!list.check(ip, 'ipv6')) continue
    const [high, low] = v4(ipv6Groups(ip))
    const embedded = `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
    const reason = refusalReason(embedded)
    if (reason) return `${reason} (${embedded} in ${form} form)`
  }
  return undefined
}

function notAllowed(what: string, field = 'target_url'): HeraldError {
  return errors.targetNotAllowed(
    `${what}. Herald does not call loopback, private, link-local or metadata addresses unless ` +
      'HERALD_ALLOW_PRIVATE_TARGETS=true (local development only).',
    field,
  )
}

function bare(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname
}

/** Refuses `localhost` and its subdomains by name (RFC 6761), without asking DNS. */
function isLocalhostName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '')
  return name === 'localhost' || name.endsWith('.localhost')
}

/**
 * Checks a target URL without DNS: an absolute http(s) URL without credentials, whose host is not a
 * refused IP literal or `localhost`. Returns the parsed URL; throws `target-not-allowed` otherwise.
 */
export function checkTargetUrl(url: string, allowPrivate: boolean, field = 'target_url'): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw errors.targetNotAllowed(`${field} is not an absolute URL.`, field)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw errors.targetNotAllowed(`${field} must be http or https, not ${parsed.protocol}`, field)
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw errors.targetNotAllowed(
      `${field} must not carry credentials (user:password@); use the signing secret to authenticate.`,
      field,
    )
  }
  if (allowPrivate) return parsed
  const host = bare(parsed.hostname)
  if (isLocalhostName(host)) throw notAllowed(`${field} host ${host} is a loopback name`, field)
  const reason = isIP(host) ? refusalReason(host) : undefined
  if (reason) throw notAllowed(`${field} host ${host} is ${reason}`, field)
  return parsed
}

/**
 * Resolves a target's host name and refuses it if ANY of its addresses is refused (a name with one
 * public and one private address could be sent to either). Returns the addresses.
 */
export async function resolveAndCheck(
  hostname: string,
  allowPrivate: boolean,
  resolve: Resolver = resolveAll,
): Promise<string[]> {
  const host = bare(hostname)
  if (!allowPrivate && isLocalhostName(host)) throw notAllowed(`target_url host ${host} is a loopback name`)
  let addresses: LookupAddress[]
  try {
    addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await resolve(host)
  } catch (error) {
    const code = (error as { code?: string }).code ?? (error as Error).message
    throw errors.targetNotAllowed(`target_url host ${host} does not resolve (${code}).`, 'target_url')
  }
  if (!allowPrivate) refuseAny(host, addresses)
  return addresses.map((entry) => entry.address)
}

function refuseAny(host: string, addresses: LookupAddress[]): void {
  for (const { address } of addresses) {
    const reason = refusalReason(address)
    if (reason) throw notAllowed(`target_url host ${host} resolves to ${address}, ${reason}`)
  }
}

/** checkTargetUrl and resolveAndCheck together: what a hook or subscription is checked with on creation. */
export async function validateTarget(url: string, allowPrivate: boolean, resolve?: Resolver): Promise<URL> {
  const parsed = checkTargetUrl(url, allowPrivate)
  await resolveAndCheck(parsed.hostname, allowPrivate, resolve)
  return parsed
}

/** A `lookup` for net.connect that refuses a name when any of its addresses is refused. */
function guardedLookup(allowPrivate: boolean, resolve: Resolver): LookupFunction {
  const pick = async (hostname: string, family: unknown) => {
    const addresses = await resolve(hostname)
    if (!allowPrivate) refuseAny(hostname, addresses)
    const wanted = addresses.filter((entry) => !family || entry.family === family)
    if (wanted.length > 0) return wanted
    throw Object.assign(new Error(`no IPv${family} address for ${hostname}`), { code: 'ENOTFOUND' })
  }
  return (hostname, options, callback) => {
    pick(hostname, options.family).then(
      (wanted) =>
        options.all ? callback(null, wanted) : callback(null, wanted[0]!.address, wanted[0]!.family),
      (error: NodeJS.ErrnoException) => callback(error, ''),
    )
  }
}

export interface GuardedAgentOptions {
  allowPrivate: boolean
  connectTimeoutMs?: number
  /** DNS for the connection; defaults to the system resolver (tests inject a fake one). */
  resolve?: Resolver
}

/**
 * An undici Agent for outbound deliveries whose connections pass the guard: an IP literal is checked
 * before connecting, a name is checked on the addresses DNS returns at connect time (the ones the
 * socket then uses), and the peer address of the open socket is checked once more.
 *
 * It follows no redirects: undici's `request` never does unless the redirect interceptor is composed
 * in, which this agent does not do. (Do not use fetch with it: fetch follows redirects by default,
 * although each hop would still pass this guard.)
 */
export function createGuardedAgent(options: GuardedAgentOptions): Agent {
  const { allowPrivate, connectTimeoutMs = 10_000, resolve = resolveAll } = options
  const connect = buildConnector({ timeout: connectTimeoutMs, lookup: guardedLookup(allowPrivate, resolve) })
  return new Agent({
    connect(target, callback) {
      const host = bare(target.hostname)
      const early = allowPrivate ? undefined : isIP(host) ? refusalReason(host) : undefined
      if (early) return callback(notAllowed(`target_url host ${host} is ${early}`), null)
      connect(target, (error, socket) => {
        if (error || !socket) return callback(error ?? new Error('no socket'), null)
        const peer = socket.remoteAddress
        const reason = allowPrivate ? undefined : refusalReason(peer ?? '')
        if (!reason) return callback(null, socket)
        socket.destroy()
        callback(notAllowed(`target_url host ${host} connected to ${peer}, ${reason}`), null)
      })
    },
  })
}
