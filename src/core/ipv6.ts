/**
 * The eight 16-bit groups of an IPv6 address, `::` expanded (the URL parser canonicalizes the text
 * first, dotted IPv4 tails included). The SSRF guard reads embedded IPv4 addresses from them, the
 * per-client connection limit the /64 prefix. A zone (`fe80::1%eth0`) must be removed first.
 */
export function ipv6Groups(address: string): number[] {
  const [head = '', tail] = new URL(`http://[${address}]/`).hostname.slice(1, -1).split('::')
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((hex) => Number.parseInt(hex, 16)))
  if (tail === undefined) return parse(head)
  const left = parse(head)
  const right = parse(tail)
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
}
