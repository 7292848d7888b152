import { connect } from '@nats-io/transport-node'
import { NatsTransport } from '../../src/bus/nats.ts'
import { natsMissing, skipWithout, TEST_NATS_URL } from '../services.ts'
import { busContract } from './contract.ts'

busContract('NATS', {
  skip: await skipWithout(natsMissing()),
  cluster: {
    kind: 'nats',
    transport: (channel) => new NatsTransport(TEST_NATS_URL, channel),
    async sendRaw(channel, message) {
      const connection = await connect({ servers: new URL(TEST_NATS_URL).host })
      try {
        connection.publish(channel, message)
        await connection.flush()
      } finally {
        await connection.close()
      }
    },
  },
})
