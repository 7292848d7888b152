import { Redis } from 'ioredis'
import { RedisTransport } from '../../src/bus/redis.ts'
import { redisMissing, skipWithout, TEST_REDIS_URL } from '../services.ts'
import { busContract } from './contract.ts'

busContract('Redis', {
  skip: await skipWithout(redisMissing()),
  cluster: {
    kind: 'redis',
    transport: (channel) => new RedisTransport(TEST_REDIS_URL, channel),
    async sendRaw(channel, message) {
      const client = new Redis(TEST_REDIS_URL)
      try {
        await client.publish(channel, message)
      } finally {
        client.disconnect()
      }
    },
  },
})
