// The real @electric-sql/client syncing fiberkit's shapes, run by
// plugins/sync/electric_client_test.go with SHAPES_URL: the test's Fiber app, whose
// /shapes/* routes serve shapes with syncweb and whose /ctl/* routes write to the
// database, interrupt shapes and restart the Sync plugin.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ShapeStream, Shape, isChangeMessage, isControlMessage } from '@electric-sql/client'

const BASE = process.env.SHAPES_URL
if (!BASE) throw new Error('SHAPES_URL is not set')

async function ctl(path, body) {
  const r = await fetch(`${BASE}/ctl/${path}`, { method: 'POST', body })
  const text = await r.text()
  if (!r.ok) throw new Error(`ctl ${path}: ${r.status} ${text}`)
  return text
}
const sql = (q) => ctl('sql', q)

// open starts a stream and a Shape on it; close aborts both at the end of the test.
function open(t, path, opts = {}) {
  const ac = new AbortController()
  const messages = []
  const stream = new ShapeStream({ url: `${BASE}${path}`, signal: ac.signal, ...opts })
  stream.subscribe((batch) => { messages.push(...batch) }, () => {})
  const shape = new Shape(stream)
  t.after(() => ac.abort())
  return { stream, shape, messages }
}

// until resolves once cond(rows) holds after an up-to-date (within 20 s).
function until(shape, cond, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsub()
      reject(new Error(`not within 20 s: ${what}; rows ${JSON.stringify(shape.currentRows, big)}`))
    }, 20000)
    const check = () => {
      if (cond(shape.currentRows)) {
        clearTimeout(timer)
        unsub()
        resolve(shape.currentRows)
        return true
      }
      return false
    }
    const unsub = shape.subscribe(() => { check() })
    if (shape.isUpToDate) check()
  })
}

function waitMessage(messages, pred, what) {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const tick = () => {
      const m = messages.find(pred)
      if (m) return resolve(m)
      if (Date.now() - start > 20000) return reject(new Error(`no message within 20 s: ${what}`))
      setTimeout(tick, 20)
    }
    tick()
  })
}

const big = (_, v) => (typeof v === 'bigint' ? `${v}n` : v)
const byId = (rows, id) => rows.find((r) => r.id === id)

test('initial sync parses every type with the schema header', async (t) => {
  const { shape } = open(t, '/shapes/items')
  const rows = await shape.rows
  assert.deepEqual(rows.map((r) => r.id).sort(), [1, 2, 3])
  const one = byId(rows, 1)
  assert.equal(one.owner, 'ann')
  assert.equal(one.n, 9007199254740993n) // int8 → BigInt, exact
  assert.equal(one.done, true)
  assert.deepEqual(one.tags, ['a', 'b c'])
  assert.equal(one.price, '1.50') // numeric stays a string
  assert.deepEqual(one.meta, { k: [1, 2] })
  assert.equal(one.ratio, 0.25)
  assert.equal(one.at, '2024-01-02 03:04:05+00')
  assert.equal(byId(rows, 2).done, false)
  assert.deepEqual(byId(rows, 2).tags, [])
  assert.equal(byId(rows, 3).title, null)
})

test('live insert, update and delete', async (t) => {
  const { shape } = open(t, '/shapes/items')
  await shape.rows
  await sql(`INSERT INTO items (id, owner, title) VALUES (10, 'dee', 'ten')`)
  await until(shape, (rows) => byId(rows, 10)?.title === 'ten', 'insert 10')
  await sql(`UPDATE items SET title = 'TEN', n = 7 WHERE id = 10`)
  const rows = await until(shape, (rows) => byId(rows, 10)?.title === 'TEN', 'update 10')
  assert.equal(byId(rows, 10).n, 7n)
  assert.equal(byId(rows, 10).owner, 'dee') // kept from the insert: updates send changed columns
  await sql(`DELETE FROM items WHERE id = 10`)
  await until(shape, (rows) => !byId(rows, 10), 'delete 10')
})

test('where with params', async (t) => {
  const { shape } = open(t, '/shapes/any', { params: { where: 'owner = $1', params: ['ann'] } })
  const rows = await shape.rows
  assert.deepEqual(rows.map((r) => r.id).sort(), [1, 3])
  await sql(`INSERT INTO items (id, owner) VALUES (11, 'ann'), (12, 'bob')`)
  await until(shape, (rows) => byId(rows, 11), 'ann\'s new row')
  assert.equal(byId(shape.currentRows, 12), undefined)
  await sql(`UPDATE items SET owner = 'bob' WHERE id = 11`) // moves out
  await until(shape, (rows) => !byId(rows, 11), 'row 11 moved out')
  await sql(`DELETE FROM items WHERE id IN (11, 12)`)
})

test('a where the endpoint does not allow is refused with 400', async (t) => {
  const ac = new AbortController()
  t.after(() => ac.abort())
  const stream = new ShapeStream({ url: `${BASE}/shapes/items`, signal: ac.signal, params: { where: 'true' } })
  const err = await new Promise((resolve) => stream.subscribe(() => {}, resolve))
  assert.equal(err.status, 400)
  assert.match(JSON.stringify(err.json ?? err.text ?? err.message), /where/)
})

test('columns', async (t) => {
  const { shape } = open(t, '/shapes/any', { params: { columns: ['id', 'title'] } })
  const rows = await shape.rows
  assert.equal(rows.length, 3)
  for (const r of rows) assert.deepEqual(Object.keys(r).sort(), ['id', 'title'])
})

test('replica full sends whole rows and old values', async (t) => {
  const { shape, messages } = open(t, '/shapes/any', { params: { replica: 'full' } })
  await shape.rows
  await sql(`UPDATE items SET title = 'deux' WHERE id = 2`)
  const m = await waitMessage(messages, (m) => isChangeMessage(m) && m.headers.operation === 'update' && m.value.id === 2, 'update of 2')
  assert.equal(m.value.title, 'deux')
  assert.equal(m.value.owner, 'bob') // the whole row
  assert.deepEqual(m.old_value, { title: 'two' })
  assert.equal(typeof m.headers.lsn, 'string')
  assert.ok(Array.isArray(m.headers.txids))
  await sql(`UPDATE items SET title = 'two' WHERE id = 2`)
})

test('must-refetch after an interrupt', async (t) => {
  const { stream, shape, messages } = open(t, '/shapes/items')
  await shape.rows
  const handle = stream.shapeHandle
  assert.ok(handle)
  await ctl('interrupt?table=items')
  await waitMessage(messages, (m) => isControlMessage(m) && m.headers.control === 'must-refetch', 'must-refetch')
  await sql(`INSERT INTO items (id, owner) VALUES (13, 'eve')`)
  const rows = await until(shape, (rows) => byId(rows, 13) && byId(rows, 1), 'the refetched shape and a new row')
  assert.notEqual(stream.shapeHandle, handle)
  assert.equal(rows.length, 4)
  await sql(`DELETE FROM items WHERE id = 13`)
})

test('must-refetch after TRUNCATE', async (t) => {
  const { shape, messages } = open(t, '/shapes/notes')
  assert.equal((await shape.rows).length, 2)
  await sql(`TRUNCATE notes`)
  await waitMessage(messages, (m) => isControlMessage(m) && m.headers.control === 'must-refetch', 'must-refetch')
  await until(shape, (rows) => rows.length === 0, 'an empty shape')
  await sql(`INSERT INTO notes VALUES (9, 'after')`)
  await until(shape, (rows) => rows.length === 1 && rows[0].body === 'after', 'the row after the truncate')
})

test('resumes after the Sync plugin is killed and restarted', async (t) => {
  const { stream, shape, messages } = open(t, '/shapes/items')
  await shape.rows
  const handle = stream.shapeHandle
  await ctl('restart')
  await sql(`INSERT INTO items (id, owner, title) VALUES (14, 'fay', 'after restart')`)
  await until(shape, (rows) => byId(rows, 14)?.title === 'after restart', 'a row written after the restart')
  assert.equal(stream.shapeHandle, handle)
  assert.equal(messages.filter((m) => isControlMessage(m) && m.headers.control === 'must-refetch').length, 0)
  await sql(`DELETE FROM items WHERE id = 14`)
})

test('live updates over server-sent events', async (t) => {
  const sse = []
  const fetchClient = async (input, init) => {
    const res = await fetch(input, init)
    const url = new URL(input.toString())
    if (url.searchParams.get('live_sse') === 'true') sse.push(res.headers.get('content-type'))
    return res
  }
  const { shape } = open(t, '/shapes/items', { liveSse: true, fetchClient })
  await shape.rows
  await sql(`INSERT INTO items (id, owner, title) VALUES (15, 'gus', 'sse')`)
  await until(shape, (rows) => byId(rows, 15)?.title === 'sse', 'insert over SSE')
  await sql(`UPDATE items SET title = 'sse 2' WHERE id = 15`)
  await until(shape, (rows) => byId(rows, 15)?.title === 'sse 2', 'update over SSE')
  await sql(`DELETE FROM items WHERE id = 15`)
  await until(shape, (rows) => !byId(rows, 15), 'delete over SSE')
  assert.ok(sse.length > 0 && sse.every((ct) => ct === 'text/event-stream'), `SSE responses: ${sse}`)
})
