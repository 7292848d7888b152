// The chat page: plain JavaScript, no build. The client is Herald's own, loaded from Herald.
// Topics: `chat/<room>` holds the messages (and the presence), `typing/<room>` the typing signals.

const $ = (id) => document.getElementById(id)
const TYPING_EVERY_MS = 2000 // at most one typing signal per this
const TYPING_SHOWN_MS = 3500 // how long a signal shows "… is typing"

const config = await (await fetch('/config.json')).json()
const { Herald } = await import(`${config.heraldUrl}/v1/client.js`)

$('join').addEventListener('submit', (submitted) => {
  submitted.preventDefault()
  join($('name').value.trim(), $('room').value.trim())
})
document.body.dataset.ready = 'true'

function join(name, room) {
  $('join').hidden = true
  $('chat').hidden = false
  $('title').textContent = `#${room} as ${name}`
  const chatTopic = `chat/${room}`
  const typingTopic = `typing/${room}`

  const herald = new Herald({
    url: config.heraldUrl,
    // A fresh short-lived token from our backend: first, before each expiry, and when one is refused.
    getToken: async () => {
      const response = await fetch('/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, room }),
      })
      if (!response.ok) throw new Error(`token: ${response.status}`)
      return (await response.json()).token
    },
  })
  window.herald = herald

  // Who is online: the list on every (re)connection, then joins and leaves as they come.
  const members = new Map() // client id -> name
  const renderMembers = () => {
    const names = [...new Set(members.values())].sort()
    $('members').replaceChildren(
      ...names.map((member) => {
        const item = document.createElement('li')
        item.textContent = member === name ? `${member} (you)` : member
        item.dataset.name = member
        return item
      }),
    )
  }
  const memberName = (member) => member.info?.name ?? member.sub ?? member.client
  const refreshMembers = async () => {
    try {
      const list = await herald.presence(chatTopic)
      members.clear()
      for (const member of list) members.set(member.client, memberName(member))
      renderMembers()
    } catch (error) {
      console.warn('presence', error)
    }
  }

  herald.on('state', (state) => {
    document.body.dataset.state = state
    $('status').textContent = state
    if (state === 'connected') setTimeout(refreshMembers, 200)
  })
  herald.on('error', (error) => console.warn('herald', error))

  // History first (after: 0, every retained message), then live ones; resumed without loss after a drop.
  herald.subscribe(
    chatTopic,
    (event) => {
      if (event.type !== 'message') return
      const item = document.createElement('li')
      item.dataset.seq = String(event.seq)
      const who = document.createElement('b')
      who.textContent = event.data.name
      const text = document.createElement('span')
      text.textContent = event.data.text
      item.append(who, text)
      const list = $('messages')
      list.append(item)
      while (list.children.length > 500) list.firstElementChild.remove()
      list.scrollTop = list.scrollHeight
      clearTyping(event.data.name)
    },
    {
      after: 0,
      onGap: (gap) => console.warn('missed messages', gap),
      presence: { info: { name } },
      onPresence: (change) => {
        if (change.op === 'join') members.set(change.member.client, memberName(change.member))
        else members.delete(change.member.client)
        renderMembers()
      },
    },
  )

  // Typing: new signals only (no history), shown for a few seconds.
  const typing = new Map() // name -> timer
  const renderTyping = () => {
    const names = [...typing.keys()]
    $('typing').textContent =
      names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`
  }
  function clearTyping(who) {
    clearTimeout(typing.get(who))
    if (typing.delete(who)) renderTyping()
  }
  herald.subscribe(typingTopic, (event) => {
    const who = event.data?.name
    if (typeof who !== 'string' || who === name) return
    clearTimeout(typing.get(who))
    typing.set(
      who,
      setTimeout(() => clearTyping(who), TYPING_SHOWN_MS),
    )
    renderTyping()
  })
  let lastTyping = 0
  $('text').addEventListener('input', () => {
    if (Date.now() - lastTyping < TYPING_EVERY_MS || $('text').value === '') return
    lastTyping = Date.now()
    herald.publish(typingTopic, { type: 'typing', data: { name } }).catch(() => {})
  })

  $('send').addEventListener('submit', async (submitted) => {
    submitted.preventDefault()
    const text = $('text').value.trim()
    if (text === '') return
    $('text').value = ''
    lastTyping = 0
    try {
      // Over HTTP with an idempotency key: a retry after a lost answer stores nothing twice.
      await herald.publish(chatTopic, { type: 'message', data: { name, text } })
    } catch (error) {
      $('text').value = text
      console.warn('send', error)
    }
  })
}
