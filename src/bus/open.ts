import { ConfigError, type HeraldConfig } from '../config/config.ts'
import type { Bus } from './bus.ts'
import { LocalBus } from './local.ts'

/** The Bus the configuration asks for. */
export function openBus(config: HeraldConfig): Bus {
  if (config.busUrl !== undefined) {
    throw new ConfigError(
      'HERALD_BUS_URL is set, but the Redis/NATS bus is not available in this version; unset it to run as one node.',
    )
  }
  return new LocalBus()
}
