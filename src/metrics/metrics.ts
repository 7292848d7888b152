import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/**
 * Every metric Herald exports, on one registry (not prom-client's global one, so that several servers
 * in one process, as in the tests, do not collide). Names carry the `herald_` prefix; labels stay
 * low-cardinality: never a topic name or an id.
 */
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'herald_' })
  const metrics = {
    registry,
    eventsPublished: new Counter({
      name: 'herald_events_published_total',
      help: 'Events stored by publish requests (repeats excluded).',
      registers: [registry],
    }),
    publishRequests: new Counter({
      name: 'herald_publish_requests_total',
      help: 'Publish requests by outcome: created, repeat or error.',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    publishDuration: new Histogram({
      name: 'herald_publish_duration_seconds',
      help: 'Time from a publish request arriving to its events being durable.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    longPollsOpen: new Gauge({
      name: 'herald_long_polls_open',
      help: 'Long-poll requests currently held open.',
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'herald_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status code.',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    connectionsOpen: new Gauge({
      name: 'herald_connections_open',
      help: 'Open streaming connections by protocol (sse, ndjson, ws).',
      labelNames: ['protocol'] as const,
      registers: [registry],
    }),
    connectionsRefused: new Counter({
      name: 'herald_connections_refused_total',
      help: 'Streaming connections refused because the process was at --max-connections.',
      labelNames: ['protocol'] as const,
      registers: [registry],
    }),
    httpConnectionsClosed: new Counter({
      name: 'herald_http_connections_closed_total',
      help: 'Connections the server closed to bound what a client makes it hold, by reason.',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    eventsSent: new Counter({
      name: 'herald_events_sent_total',
      help: 'Events written to streaming connections, by protocol.',
      labelNames: ['protocol'] as const,
      registers: [registry],
    }),
    bytesSent: new Counter({
      name: 'herald_stream_bytes_sent_total',
      help: 'Bytes of event frames written to streaming connections, by protocol.',
      labelNames: ['protocol'] as const,
      registers: [registry],
    }),
    slowConsumerDisconnects: new Counter({
      name: 'herald_slow_consumer_disconnects_total',
      help: 'Streams cut off: send buffer past --stream-buffer, or nothing taken for --stream-stall-timeout.',
      labelNames: ['protocol'] as const,
      registers: [registry],
    }),
    deliveryAttempts: new Counter({
      name: 'herald_delivery_attempts_total',
      help: 'Webhook delivery attempts by outcome: delivered, retry, failed (given up) or gone (410).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    deliveryDuration: new Histogram({
      name: 'herald_delivery_attempt_duration_seconds',
      help: 'Time from sending a webhook delivery to having its answer (or giving up on it).',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    websubVerifications: new Counter({
      name: 'herald_websub_verifications_total',
      help: 'WebSub verifications of intent by mode (subscribe, unsubscribe) and outcome (verified, failed, denied).',
      labelNames: ['mode', 'outcome'] as const,
      registers: [registry],
    }),
    busMessages: new Counter({
      name: 'herald_bus_messages_total',
      help: 'Cluster bus messages by direction: sent (by this node) or received (from the other nodes).',
      labelNames: ['direction'] as const,
      registers: [registry],
    }),
    busConnected: new Gauge({
      name: 'herald_bus_connected',
      help: '1 while the bus reaches the other nodes (always, on a single node); 0 while it is down.',
      registers: [registry],
    }),
    eventsPruned: new Counter({
      name: 'herald_events_pruned_total',
      help: 'Events removed by retention.',
      registers: [registry],
    }),
  }
  // Bound to their label once: a fan-out increments them per connection per delivery, where looking
  // the label up (or binding it per connection) would cost more than the write itself.
  const streamCounters = (protocol: 'sse' | 'ndjson' | 'ws') => ({
    events: metrics.eventsSent.labels(protocol),
    bytes: metrics.bytesSent.labels(protocol),
    slowConsumers: metrics.slowConsumerDisconnects.labels(protocol),
  })
  // Shown from the start, at 0; a single node's bus is always connected (a cluster's says otherwise).
  const bus = { sent: metrics.busMessages.labels('sent'), received: metrics.busMessages.labels('received') }
  bus.sent.inc(0)
  bus.received.inc(0)
  metrics.busConnected.set(1)
  return {
    ...metrics,
    bus,
    streams: { sse: streamCounters('sse'), ndjson: streamCounters('ndjson'), ws: streamCounters('ws') },
  }
}

export type Metrics = ReturnType<typeof createMetrics>

/** `herald_deliveries{state}`: the delivery queue's rows by state, counted when scraped. */
export function registerDeliveryGauge(metrics: Metrics, counts: () => Promise<Record<string, number>>): void {
  new Gauge({
    name: 'herald_deliveries',
    help: 'Webhook deliveries in the store by state: pending, delivered or failed.',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    async collect() {
      for (const [state, count] of Object.entries(await counts())) this.set({ state }, count)
    },
  })
}
export type StreamCounters = Metrics['streams']['ws']
