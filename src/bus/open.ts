import type { Logger } from 'pino'
import { ConfigError, type HeraldConfig } from '../config/config.ts'
import type { Bus } from './bus.ts'
import { type BusHooks, ClusterBus, type HeadSource } from './cluster.ts'
import { LocalBus } from './local.ts'
import { NatsTransport } from './nats.ts'
import { RedisTransport } from './redis.ts'

/**
 * The Bus the configuration asks for, connected and subscribed: in-process without HERALD_BUS_URL,
 * Redis (`redis://`, `rediss://`) or NATS (`nats://`) with it. The channel is the cluster's: named
 * after the database schema its nodes share, so two clusters on one Redis or NATS never mix.
 */
export async function openBus(
  config: HeraldConfig,
  heads: HeadSource,
  logger: Logger,
  hooks?: BusHooks,
): Promise<Bus> {
  if (config.busUrl === undefined) return new LocalBus()
  if (config.databaseUrl === undefined) {
    throw new ConfigError(
      'HERALD_BUS_URL is set without HERALD_DATABASE_URL: the nodes of a cluster share one PostgreSQL store (each SQLite store is its own).',
    )
  }
  let protocol: string
  try {
    protocol = new URL(config.busUrl).protocol
  } catch {
    throw new ConfigError('Invalid HERALD_BUS_URL: not a URL (redis://host:6379 or nats://host:4222).')
  }
  const name = `herald.${config.databaseSchema}.heads`
  const transport =
    protocol === 'redis:' || protocol === 'rediss:'
      ? new RedisTransport(config.busUrl, name)
      : protocol === 'nats:'
        ? new NatsTransport(config.busUrl, name)
        : undefined
  if (transport === undefined) {
    throw new ConfigError('Invalid HERALD_BUS_URL: use redis://, rediss:// or nats://.')
  }
  const bus = new ClusterBus({
    kind: transport instanceof RedisTransport ? 'redis' : 'nats',
    transport,
    nodeId: config.nodeId,
    heads,
    logger,
    hooks,
  })
  try {
    await bus.start()
  } catch (error) {
    await bus.close().catch(() => {})
    throw new Error(`Cannot reach the bus at HERALD_BUS_URL: ${(error as Error).message}`, { cause: error })
  }
  return bus
}
