import { busContract } from './contract.ts'

busContract('in-process', { skip: false })
