import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { type Chat, startChat } from '../../examples/chat/server.ts'
import { chromiumMissing, launchChromium } from '../chromium.ts'

// examples/chat in a real browser: two people in a room, one of them offline for a while.
const missing = chromiumMissing
if (missing) process.stderr.write(`\n*** chat example tests ${missing} ***\n\n`)

async function join(context: BrowserContext, url: string, name: string, room: string): Promise<Page> {
  const page = await context.newPage()
  page.on('pageerror', (error) => process.stderr.write(`[${name}] page error: ${error.message}\n`))
  await page.goto(url)
  await page.waitForSelector('body[data-ready="true"]')
  await page.fill('#name', name)
  await page.fill('#room', room)
  await page.click('#join button')
  await page.waitForSelector('body[data-state="connected"]')
  return page
}

const messages = (page: Page) =>
  page.$$eval('#messages li', (items) => items.map((item) => item.textContent ?? ''))
const members = (page: Page) =>
  page.$$eval('#members li', (items) => items.map((item) => (item as HTMLElement).dataset['name']))

async function send(page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.click('#send button')
}

describe('examples/chat in headless Chromium', { skip: missing }, () => {
  let chat: Chat
  let browser: Browser
  before(async () => {
    chat = await startChat({ port: 0, heraldPort: 0, logLevel: 'silent' })
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await chat?.close()
  })

  test('two people: presence, messages, typing, and an offline spell that misses nothing', async () => {
    const annContext = await browser.newContext()
    const bobContext = await browser.newContext()
    const ann = await join(annContext, chat.url, 'ann', 'lobby')
    await send(ann, 'before bob')
    const bob = await join(bobContext, chat.url, 'bob', 'lobby')

    // History on join, and each sees the other online.
    await bob.waitForFunction(() => document.querySelectorAll('#messages li').length === 1)
    assert.deepEqual(await messages(bob), ['annbefore bob'])
    await ann.waitForSelector('#members li[data-name="bob"]')
    await bob.waitForSelector('#members li[data-name="ann"]')
    assert.deepEqual(await members(ann), ['ann', 'bob'])

    // Typing shows on the other page.
    await bob.type('#text', 'h')
    await ann.waitForFunction(() => document.querySelector('#typing')?.textContent === 'bob is typing…')
    await bob.fill('#text', '')

    // A message from one appears in the other.
    await send(bob, 'hi ann')
    await ann.waitForFunction(() => document.querySelectorAll('#messages li').length === 2)
    assert.deepEqual(await messages(ann), ['annbefore bob', 'bobhi ann'])

    // Ann goes offline; bob sends two; ann comes back and gets exactly those, once, in order.
    await annContext.setOffline(true)
    await ann.waitForSelector('body:not([data-state="connected"])')
    await send(bob, 'missed one')
    await send(bob, 'missed two')
    await bob.waitForFunction(() => document.querySelectorAll('#messages li').length === 4)
    assert.equal((await messages(ann)).length, 2)
    await annContext.setOffline(false)
    await ann.waitForSelector('body[data-state="connected"]')
    await ann.waitForFunction(() => document.querySelectorAll('#messages li').length >= 4)
    await new Promise((resolve) => setTimeout(resolve, 500)) // a duplicate would have arrived by now
    const expected = ['annbefore bob', 'bobhi ann', 'bobmissed one', 'bobmissed two']
    assert.deepEqual(await messages(ann), expected)
    assert.deepEqual(await messages(bob), expected)
    const seqs = await ann.$$eval('#messages li', (items) =>
      items.map((item) => Number((item as HTMLElement).dataset['seq'])),
    )
    assert.deepEqual(seqs, [1, 2, 3, 4])
    await annContext.close()
    await bobContext.close()
  })

  test('a plain page on the example origin imports /v1/client.js from Herald and receives an event', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${chat.url}/config.json`) // any page of the example's origin, no chat.js
    const token = await (
      await fetch(`${chat.url}/token`, {
        method: 'POST',
        body: JSON.stringify({ name: 'plain', room: 'plain' }),
      })
    ).json()
    const received = await page.evaluate(
      async ({ heraldUrl, token }) => {
        const { Herald } = await import(`${heraldUrl}/v1/client.js`)
        const herald = new Herald({ url: heraldUrl, token })
        const event = await new Promise<{ seq: number; data: unknown }>((resolve) => {
          herald.subscribe('chat/plain', resolve, { after: 0 })
          herald.publish('chat/plain', { type: 'message', data: { name: 'plain', text: 'hello' } })
        })
        herald.close()
        return { seq: event.seq, data: event.data }
      },
      { heraldUrl: chat.heraldUrl, token: (token as { token: string }).token },
    )
    assert.deepEqual(received, { seq: 1, data: { name: 'plain', text: 'hello' } })
    await context.close()
  })
})
