// The todo page: the user's todos kept live by @electric-sql/client's ShapeStream
// (Electric's HTTP API, served by the Sync module through this module's /shape), and
// written through /write, whose answer is the transaction id the stream then carries.
import { ShapeStream, Shape } from './electric-client.mjs'

const base = new URL('.', location.href)
const list = document.getElementById('list')
const status = document.getElementById('status')
const pending = new Map() // txid → resolve, for writes the stream has not shown yet

const stream = new ShapeStream({ url: new URL('shape', base).href })
const shape = new Shape(stream)

// Every message's txids settle the writes waiting for them.
stream.subscribe((messages) => {
  for (const m of messages) {
    for (const txid of m.headers?.txids ?? []) {
      pending.get(Number(txid))?.()
      pending.delete(Number(txid))
    }
  }
}, (err) => { status.textContent = 'sync error: ' + err.message })

shape.subscribe(({ rows }) => render(rows))

function render(rows) {
  rows = [...rows].sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)))
  list.replaceChildren(...rows.map((t) => {
    const li = document.createElement('li')
    li.dataset.id = t.id
    li.className = t.done ? 'done' : ''
    const box = document.createElement('input')
    box.type = 'checkbox'
    box.checked = !!t.done
    box.addEventListener('change', () => write([{ type: 'update', original: t, modified: { ...t, done: box.checked } }]))
    const span = document.createElement('span')
    span.textContent = t.title // text, never HTML
    const del = document.createElement('button')
    del.textContent = '✕'
    del.title = 'delete'
    del.addEventListener('click', () => write([{ type: 'delete', original: t }]))
    li.append(box, span, del)
    return li
  }))
  status.textContent = `${rows.length} todo${rows.length === 1 ? '' : 's'} · live`
}

// write sends mutations and resolves once the stream carried their transaction.
async function write(mutations) {
  for (const m of mutations) m.syncMetadata = { relation: ['public', 'todos'] }
  const resp = await fetch(new URL('write', base), {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(mutations),
  })
  const body = await resp.json()
  if (!resp.ok) {
    status.textContent = 'refused: ' + (body.message ?? resp.status)
    return
  }
  await new Promise((resolve) => pending.set(Number(body.txid), resolve))
}

document.getElementById('add').addEventListener('submit', (e) => {
  e.preventDefault()
  const input = document.getElementById('title')
  const title = input.value.trim()
  if (!title) return
  input.value = ''
  write([{ type: 'insert', modified: { id: crypto.randomUUID(), owner: document.querySelector('meta[name=todo-user]').content, title, done: false } }])
})
