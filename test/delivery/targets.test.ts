import assert from 'node:assert/strict'
import type { LookupAddress } from 'node:dns'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import { HeraldError } from '../../src/core/errors.ts'
import {
  checkTargetUrl,
  createGuardedAgent,
  refusalReason,
  resolveAndCheck,
  validateTarget,
} from '../../src/delivery/targets.ts'

// Public addresses appear only in the classifier and in fake DNS answers: no test sends them a packet.
const PUBLIC = ['93.184.216.34', '2606:4700::1', '8.8.8.8', '::ffff:93.184.216.34', '64:ff9b::5db8:d822']

const REFUSED: Array<[address: string, reason: RegExp]> = [
  ['127.0.0.1', /loopback/],
  ['127.255.255.254', /loopback/],
  ['::1', /loopback/],
  ['10.1.2.3', /private/],
  ['172.16.0.1', /private/],
  ['172.31.255.255', /private/],
  ['192.168.1.1', /private/],
  ['fc00::1', /private/],
  ['fd12:3456::1', /private/],
  ['169.254.1.1', /link-local/],
  ['fe80::1', /link-local/],
  ['fe80::1%eth0', /link-local/],
  ['100.64.0.1', /CGNAT/],
  ['100.127.255.255', /CGNAT/],
  ['224.0.0.1', /multicast/],
  ['239.255.255.250', /multicast/],
  ['ff02::1', /multicast/],
  ['0.0.0.0', /unspecified/],
  ['0.1.2.3', /unspecified/],
  ['::', /unspecified/],
  ['255.255.255.255', /broadcast/],
  ['240.0.0.1', /reserved/],
  ['169.254.169.254', /metadata/],
  ['100.100.100.200', /metadata/],
  ['fd00:ec2::254', /metadata/],
  // IPv6 forms that carry a refused IPv4 address
  ['::ffff:127.0.0.1', /loopback/],
  ['::ffff:7f00:1', /loopback/],
  ['0:0:0:0:0:ffff:a9fe:a9fe', /metadata/],
  ['::ffff:10.0.0.1', /private/],
  ['::127.0.0.1', /loopback.*IPv4-compatible/],
  ['::a9fe:a9fe', /metadata.*IPv4-compatible/],
  ['::ffff:0:7f00:1', /loopback.*IPv4-translated/],
  ['64:ff9b::7f00:1', /loopback.*NAT64/],
  ['64:ff9b::192.168.0.1', /private.*NAT64/],
  ['64:ff9b::a9fe:a9fe', /metadata.*NAT64/],
  ['2002:7f00:1::', /loopback.*6to4/],
  ['2002:c0a8:101::1', /private.*6to4/],
  ['2001:0:4136:e378:8000:63bf:f5ff:fffe', /private.*Teredo/],
]

function refusedWith(pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof HeraldError, `not a HeraldError: ${error}`)
    assert.equal(error.code, 'target-not-allowed')
    assert.equal(error.status, 422)
    assert.equal(error.field, 'target_url')
    assert.match(error.message, pattern)
    return true
  }
}

describe('the address classifier', () => {
  test('public addresses pass', () => {
    for (const address of PUBLIC) assert.equal(refusalReason(address), undefined, address)
  })
  test('every refused range, and IPv6 forms embedding one, is refused with its reason', () => {
    for (const [address, reason] of REFUSED)
      assert.match(refusalReason(address) ?? 'allowed', reason, address)
  })
  test('what is not an IP address is refused', () => {
    assert.ok(refusalReason('example.com'))
  })
})

describe('checkTargetUrl', () => {
  test('public http(s) URLs are returned parsed', () => {
    assert.equal(checkTargetUrl('https://example.com/hooks?x=1', false).href, 'https://example.com/hooks?x=1')
    assert.equal(checkTargetUrl('http://93.184.216.34:8080/', false).port, '8080')
    assert.equal(checkTargetUrl('http://[2606:4700::1]/', false).hostname, '[2606:4700::1]')
  })

  test('refused IP literals, in every spelling the URL parser accepts, name the reason and the opt-out', () => {
    for (const [address, reason] of REFUSED) {
      if (address.includes('%')) continue // a zone id is not valid in a URL
      const host = address.includes(':') ? `[${address}]` : address
      assert.throws(() => checkTargetUrl(`http://${host}:9000/hook`, false), refusedWith(reason), address)
    }
    for (const url of [
      'http://2130706433/', // 127.0.0.1 as one number
      'http://0x7f.1/',
      'http://0177.0.0.1/',
      'http://127.1/',
      'http://127.0.0.1./',
      'https://[0:0:0:0:0:ffff:127.0.0.1]/',
    ]) {
      assert.throws(() => checkTargetUrl(url, false), refusedWith(/loopback/), url)
    }
    assert.throws(
      () => checkTargetUrl('http://10.0.0.1/', false),
      refusedWith(/HERALD_ALLOW_PRIVATE_TARGETS/),
    )
  })

  test('localhost and *.localhost are refused by name', () => {
    for (const url of ['http://localhost/', 'http://LOCALHOST.:8080/', 'https://api.localhost/x']) {
      assert.throws(() => checkTargetUrl(url, false), refusedWith(/loopback name/), url)
    }
  })

  test('only http and https, without credentials, and only absolute URLs', () => {
    for (const url of [
      'ftp://example.com/',
      'file:///etc/passwd',
      'gopher://example.com/',
      'ws://example.com/',
    ]) {
      assert.throws(() => checkTargetUrl(url, false), refusedWith(/http or https/), url)
      assert.throws(() => checkTargetUrl(url, true), refusedWith(/http or https/), url)
    }
    for (const url of ['https://user:pw@example.com/', 'https://user@example.com/']) {
      assert.throws(() => checkTargetUrl(url, true), refusedWith(/credentials/), url)
    }
    for (const url of ['/hooks', 'example.com/hooks', '']) {
      assert.throws(() => checkTargetUrl(url, false), refusedWith(/absolute URL/), url)
    }
  })

  test('allowPrivate lets loopback, private and localhost targets through', () => {
    for (const url of [
      'http://127.0.0.1:3000/',
      'http://localhost:3000/',
      'http://[::1]/',
      'http://10.0.0.1/',
    ]) {
      assert.equal(checkTargetUrl(url, true).href, url)
    }
  })
})

/** Fake DNS: a fixed answer per name, counting the questions. */
function fakeDns(answers: Record<string, string[]>) {
  const asked: string[] = []
  const resolve = async (hostname: string): Promise<LookupAddress[]> => {
    asked.push(hostname)
    const addresses = answers[hostname]
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
  return { resolve, asked }
}

describe('resolveAndCheck (at creation)', () => {
  const dns = fakeDns({
    'public.test': ['93.184.216.34', '2606:4700::1'],
    'mixed.test': ['93.184.216.34', '10.0.0.7'],
    'loopback.test': ['127.0.0.1'],
    'metadata.test': ['169.254.169.254'],
  })

  test('a name whose addresses are all public passes and returns them', async () => {
    assert.deepEqual(await resolveAndCheck('public.test', false, dns.resolve), [
      '93.184.216.34',
      '2606:4700::1',
    ])
  })

  test('a name with ANY refused address is refused, naming it', async () => {
    await assert.rejects(
      resolveAndCheck('mixed.test', false, dns.resolve),
      refusedWith(/resolves to 10\.0\.0\.7/),
    )
    await assert.rejects(resolveAndCheck('loopback.test', false, dns.resolve), refusedWith(/loopback/))
    await assert.rejects(resolveAndCheck('metadata.test', false, dns.resolve), refusedWith(/metadata/))
    assert.deepEqual(await resolveAndCheck('loopback.test', true, dns.resolve), ['127.0.0.1'])
  })

  test('a name that does not resolve is refused', async () => {
    await assert.rejects(resolveAndCheck('nowhere.test', false, dns.resolve), refusedWith(/ENOTFOUND/))
  })

  test('http://localhost:PORT/ is refused at creation without asking DNS', async () => {
    const before = dns.asked.length
    await assert.rejects(
      validateTarget('http://localhost:8123/hook', false, dns.resolve),
      refusedWith(/loopback/),
    )
    await assert.rejects(resolveAndCheck('localhost', false, dns.resolve), refusedWith(/loopback/))
    assert.equal(dns.asked.length, before)
    // With the real resolver too (localhost is never looked up).
    await assert.rejects(validateTarget('http://localhost:8123/hook', false), refusedWith(/loopback/))
  })

  test('IP literals are checked without DNS', async () => {
    await assert.rejects(resolveAndCheck('[::ffff:127.0.0.1]', false, dns.resolve), refusedWith(/loopback/))
    assert.deepEqual(await resolveAndCheck('[::1]', true, dns.resolve), ['::1'])
  })
})

describe('the guarded agent (at connect time)', () => {
  let server: Server
  let port = 0
  const hits: string[] = []
  before(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '')
      if (req.url === '/redirect') {
        res.writeHead(302, { location: `http://127.0.0.1:${port}/landed` }).end()
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello from ${req.url}`)
      }
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as AddressInfo).port
  })
  after(() => server.close())

  test('a name that resolves to 127.0.0.1 is refused at connect time; with allowPrivate it connects', async () => {
    const dns = fakeDns({ 'hooks.example.test': ['127.0.0.1'] })
    const url = `http://hooks.example.test:${port}/hook`
    const guarded = createGuardedAgent({ allowPrivate: false, resolve: dns.resolve })
    const open = createGuardedAgent({ allowPrivate: true, resolve: dns.resolve })
    try {
      const before = hits.length
      await assert.rejects(
        request(url, { dispatcher: guarded }),
        refusedWith(/resolves to 127\.0\.0\.1.*loopback/),
      )
      assert.equal(hits.length, before, 'the refused request never reached the server')
      assert.deepEqual(dns.asked, ['hooks.example.test'])

      const response = await request(url, { dispatcher: open })
      assert.equal(response.statusCode, 200)
      assert.equal(await response.body.text(), 'hello from /hook')
    } finally {
      await Promise.all([guarded.close(), open.close()])
    }
  })

  test('DNS rebinding: a name that was public at creation and loopback at delivery is refused', async () => {
    let answers = 0
    const resolve = async (): Promise<LookupAddress[]> =>
      answers++ === 0 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]
    const url = `http://rebind.example.test:${port}/hook`
    await validateTarget(url, false, resolve) // only resolves: nothing is sent anywhere
    const agent = createGuardedAgent({ allowPrivate: false, resolve })
    try {
      const before = hits.length
      await assert.rejects(request(url, { dispatcher: agent }), refusedWith(/127\.0\.0\.1/))
      assert.equal(hits.length, before)
    } finally {
      await agent.close()
    }
  })

  test('a name with a public and a private address is refused before any connection', async () => {
    // Loopback first: even a broken guard would connect there, never to the public address.
    const dns = fakeDns({ 'mixed.example.test': ['127.0.0.1', '93.184.216.34'] })
    const agent = createGuardedAgent({ allowPrivate: false, resolve: dns.resolve })
    try {
      const before = hits.length
      await assert.rejects(
        request(`http://mixed.example.test:${port}/`, { dispatcher: agent }),
        refusedWith(/resolves to 127\.0\.0\.1/),
      )
      assert.equal(hits.length, before)
    } finally {
      await agent.close()
    }
  })

  test('IP literals are refused by the agent itself, without DNS', async () => {
    const dns = fakeDns({})
    const agent = createGuardedAgent({ allowPrivate: false, resolve: dns.resolve })
    try {
      const before = hits.length
      for (const host of ['127.0.0.1', '[::ffff:127.0.0.1]', '[::1]']) {
        await assert.rejects(
          request(`http://${host}:${port}/`, { dispatcher: agent }),
          refusedWith(/loopback/),
          host,
        )
      }
      assert.equal(hits.length, before)
      assert.deepEqual(dns.asked, [])
    } finally {
      await agent.close()
    }
  })

  test('redirects are not followed: a 302 is reported as a 302', async () => {
    const agent = createGuardedAgent({ allowPrivate: true })
    try {
      const response = await request(`http://127.0.0.1:${port}/redirect`, { dispatcher: agent })
      assert.equal(response.statusCode, 302)
      assert.equal(response.headers['location'], `http://127.0.0.1:${port}/landed`)
      await response.body.dump()
      assert.ok(hits.includes('/redirect'))
      assert.ok(!hits.includes('/landed'), 'the redirect target was never requested')
    } finally {
      await agent.close()
    }
  })
})
