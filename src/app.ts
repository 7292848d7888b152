import type { Http2SecureServer, Http2Session } from 'node:http2'
import type { AddressInfo, Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import pino, { type Logger } from 'pino'
import { createAudit } from './access/audit.ts'
import { KeyRing } from './access/keys.ts'
import { RateLimits, rateBackendOf } from './access/rate-limit.ts'
import { createTokenVerifier } from './access/tokens.ts'
import type { Bus } from './bus/bus.ts'
import { openBus } from './bus/open.ts'
import { MaintenanceService } from './cluster/maintenance.ts'
import { NodeService } from './cluster/node.ts'
import { assertSafeBinding, type HeraldConfig } from './config/config.ts'
import { Dispatcher } from './delivery/dispatcher.ts'
import { createGuardedAgent } from './delivery/targets.ts'
import { WebSubHub } from './delivery/websub-hub.ts'
import { EventTypes } from './event-types/catalog.ts'
import { createAccess } from './http/access.ts'
import { buildServer } from './http/server.ts'
import { applySocketGuards } from './http/socket-guards.ts'
import { closeTakenOver } from './http/take-over.ts'
import { fingerprintOf, readTls, reloadTls, type TlsMaterial } from './http/tls.ts'
import { TopicLog } from './log/topic-log.ts'
import { createMetrics, registerDeliveryGauge } from './metrics/metrics.ts'
import { type DataDirLock, lockDataDir } from './store/data-lock.ts'
import { openStore } from './store/open.ts'
import type { Store } from './store/store.ts'
import { Connections } from './streams/connections.ts'
import { Presence } from './streams/presence.ts'
import { attachWebSocket } from './streams/websocket.ts'

/** How long an idle HTTP/2 session that was told to close (GOAWAY) may take before it is destroyed. */
const HTTP2_CLOSE_GRACE_MS = 5000

export interface Herald {
  /** The base URL the server listens on (with the real port when 0 was asked for). */
  url: string
  server: FastifyInstance
  log: TopicLog
  logger: Logger
  /**
   * With TLS: reads --tls-cert and --tls-key again for new handshakes (open connections keep theirs);
   * false, and the current certificate kept, when they cannot be used. Without TLS: undefined.
   */
  reloadTls: (() => boolean) | undefined
  /** Drains and stops: held requests are answered, in-flight ones finish, the store is closed. */
  close(): Promise<void>
}

/** Wires the Store, the Bus and the HTTP server together and starts listening. */
export async function startHerald(
  config: HeraldConfig,
  logger: Logger = createLogger(config),
): Promise<Herald> {
  assertSafeBinding(config)
  // Before anything is opened: a bad public key or a short secret stops the start with its reason.
  const tokens = createTokenVerifier(config.jwt)
  // Likewise the certificate: unreadable files stop the start with their reason.
  const tls: TlsMaterial | undefined = config.tls === undefined ? undefined : readTls(config.tls)
  // Before the store is opened: a second server must not touch a SQLite store another one serves.
  // PostgreSQL is shared by design (several nodes), and the data directory is then unused.
  const lock: Pick<DataDirLock, 'describe' | 'release'> =
    config.databaseUrl === undefined ? lockDataDir(config.dataDir) : { describe() {}, release() {} }
  if (config.apiKey === undefined) {
    logger.warn({ host: config.host }, 'HERALD_API_KEY is not set: the API is open to anyone on this machine')
    if (config.corsOrigins.includes('*')) {
      logger.warn(
        'HERALD_CORS_ORIGINS is "*" without HERALD_API_KEY: any web page the user visits can publish, read and create hooks through the browser',
      )
    }
  }
  const metrics = createMetrics()
  let store: Store | undefined
  let bus: Bus
  try {
    store = await openStore(config)
    const opened = store
    bus = await openBus(config, (topics) => opened.heads(topics), logger, {
      sent: () => metrics.bus.sent.inc(),
      received: () => metrics.bus.received.inc(),
      connected: (up) => metrics.busConnected.set(up ? 1 : 0),
    })
  } catch (error) {
    await store?.close()
    lock.release()
    throw error
  }
  const log = new TopicLog(store, bus, metrics)
  // The event-type catalog: every publish passes its check (schemas, topics taking registered types).
  const eventTypes = new EventTypes(store, config.publicUrl)
  log.check = (topic, inputs) => eventTypes.check(topic, inputs)
  const draining = new AbortController()
  let ready = false
  const connections = new Connections({
    maxConnections: config.maxConnections,
    heartbeatMs: config.heartbeatMs,
    stallTimeoutMs: config.streamStallTimeoutMs,
    metrics,
  })
  // Every outbound webhook request goes through this agent: the SSRF guard checks each connection.
  const presence = new Presence({
    store,
    nodeId: config.nodeId,
    logger,
    maxMembers: config.maxPresenceMembers,
    ...(config.presenceTiming === undefined ? {} : { timing: config.presenceTiming }),
  })
  const agent = createGuardedAgent({
    allowPrivate: config.allowPrivateTargets,
    connectTimeoutMs: Math.min(10_000, config.deliveryTimeoutMs),
  })
  const dispatcher = new Dispatcher({
    store,
    nodeId: config.nodeId,
    log,
    metrics,
    logger,
    agent,
    allowPrivateTargets: config.allowPrivateTargets,
    workers: config.dispatchWorkers,
    retryScheduleMs: config.retryScheduleMs,
    timeoutMs: config.deliveryTimeoutMs,
    concurrency: config.dispatchConcurrency,
    disableAfterMs: config.disableAfterMs,
    hubUrl: `${config.publicUrl}/websub`,
  })
  log.onDeliveries = () => dispatcher.wake()
  registerDeliveryGauge(metrics, () => store.deliveryCounts())
  const websub = new WebSubHub({
    log,
    store,
    nodeId: config.nodeId,
    agent,
    logger,
    publicUrl: config.publicUrl,
    allowPrivateTargets: config.allowPrivateTargets,
    lease: config.websubLease,
    fetchLimitBytes: config.bodyLimitBytes,
    timeoutMs: config.deliveryTimeoutMs,
    onVerification: (mode, outcome) => metrics.websubVerifications.inc({ mode, outcome }),
  })
  // Scoped keys, checked in memory and against the store every half second: a revoked key's
  // streams and sockets end here too.
  const keys = new KeyRing(store)
  keys.onRevoked((id) => connections.revoke(id))
  keys.watch(() => connections.keyIds())
  // Request budgets, shared by the nodes through Redis or PostgreSQL when there are several.
  const rateLimits = new RateLimits({
    defaultRate: config.rateLimit,
    backend: rateBackendOf(config),
    logger,
  })
  const httpContext = {
    config,
    access: createAccess({
      apiKey: config.apiKey,
      publicUrl: config.publicUrl,
      corsOrigins: config.corsOrigins,
      keys,
      tokens,
    }),
    rateLimits,
    log,
    metrics,
    connections,
    presence,
    draining: draining.signal,
    notReady: async () => {
      if (draining.signal.aborted) return 'The server is draining.'
      if (!ready) return 'The server is starting.'
      const reason = await store.cannotWrite()
      return reason === undefined ? undefined : `The store cannot write (${reason}).`
    },
    hooks: {
      policy: { allowPrivateTargets: config.allowPrivateTargets, secretGraceMs: config.secretGraceMs, agent },
      wake: () => dispatcher.wake(),
      store,
    },
    websub,
    cluster: { store: store.kind, bus: bus.kind, nodes: () => store.nodes() },
    keys: { store, ring: keys },
    eventTypes,
    audit: createAudit(log, logger),
  }
  const server = buildServer(httpContext, logger, tls)
  // HTTP/2 sessions (over TLS), to close at the end of the drain: an Http2SecureServer has no
  // closeAllConnections, and its HTTP/1.1 connections are sockets of its own (below).
  const sessions = new Set<Http2Session>()
  const sockets = new Set<Socket>()
  if (tls !== undefined) {
    server.server.on('session', (session: Http2Session) => {
      sessions.add(session)
      session.once('close', () => sessions.delete(session))
      // No traffic for the idle timeout: Fastify closes the session gracefully (GOAWAY), which waits
      // for its streams. A stream is never idle that long unless its reader stopped reading (a
      // stream's heartbeats and a long poll's wait are shorter): what is still open a little later
      // is dropped, so a client that reads nothing cannot make the server hold its answers.
      session.on('timeout', () => {
        const timer = setTimeout(() => session.destroy(), HTTP2_CLOSE_GRACE_MS)
        timer.unref()
        session.once('close', () => clearTimeout(timer))
      })
    })
    server.server.on('secureConnection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
  }
  const closeAllConnections = () => {
    if (tls === undefined) {
      server.server.closeAllConnections()
      closeTakenOver(server.server) // HTTP/1.1 streams: no longer the HTTP server's (take-over.ts)
      return
    }
    for (const session of sessions) session.destroy()
    for (const socket of sockets) socket.destroy()
  }

  attachWebSocket(server.server, httpContext, logger)
  applySocketGuards(server.server, {
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    connectionRatePerIp: config.connectionRatePerIp,
    stallTimeoutMs: config.streamStallTimeoutMs,
    onClose: (reason) => metrics.httpConnectionsClosed.inc({ reason }),
  })

  // Retention, expiry and the expired-lease backstop, run by the cluster's leader (on SQLite: this node).
  const maintenance = new MaintenanceService({
    store,
    nodeId: config.nodeId,
    logger,
    retention: config.retention,
    idempotencyTtlMs: config.idempotencyTtlMs,
    pruneIntervalMs: config.pruneIntervalMs,
    onPruned: (events) => metrics.eventsPruned.inc(events),
    onRecovered: () => dispatcher.wake(),
  })

  // Joined before the server listens: from then on a publish wakes the dispatcher, and joining (on
  // SQLite) releases every lease in the store, which must never be one this dispatcher just took.
  const node = new NodeService({ store, nodeId: config.nodeId, logger })
  try {
    await node.start()
    await presence.start()
    await eventTypes.start()
    await server.listen({ host: config.host, port: config.port })
  } catch (error) {
    await presence.stop()
    await node.stop()
    await rateLimits.close()
    await store.close()
    lock.release()
    throw error
  }
  ready = true
  dispatcher.start()
  websub.start()
  // Started last, stopped first: a node that stops hands the leadership over at once.
  await maintenance.start()
  const address = server.server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${tls === undefined ? 'http' : 'https'}://${host}:${address.port}`
  lock.describe(url)
  logger.info(
    {
      url,
      ...(tls === undefined ? {} : { tls: { http2: true, fingerprint: fingerprintOf(tls) } }),
      store: store.kind,
      ...(store.kind === 'sqlite' ? { data: config.dataDir } : { schema: config.databaseSchema }),
    },
    'herald is listening',
  )

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      ready = false
      draining.abort()
      connections.shutdown()
      // Released while the server drains (a task under way finishes first), so that another node
      // takes the leadership over now, not after the drain and the attempts in flight.
      const maintained = maintenance.stop()
      // In-flight requests may finish; connections still open after the grace period are closed.
      const force = setTimeout(closeAllConnections, config.shutdownTimeoutMs)
      await server.close()
      clearTimeout(force)
      // Attempts in flight finish (each is bounded by --delivery-timeout) and are recorded.
      await websub.close()
      await dispatcher.stop()
      await maintained
      // Its leases released: what the dispatcher did not send goes out at the next start, not a lease later.
      await node.stop()
      await agent.close()
      keys.close()
      eventTypes.close()
      await rateLimits.close()
      await bus.close()
      await store.close()
      lock.release()
      logger.info('herald stopped')
    })()
    return closing
  }
  const files = config.tls
  return {
    url,
    server,
    log,
    logger,
    reloadTls:
      files === undefined
        ? undefined
        : () => reloadTls(server.server as unknown as Http2SecureServer, files, logger),
    close,
  }
}

export function createLogger(config: Pick<HeraldConfig, 'logLevel'>): Logger {
  return pino({ level: config.logLevel, base: { service: 'herald' } })
}
