// The real @electric-sql/client subscribed to the shape at SHAPE_URL (live), run by
// bench/shapebench. It prints "ready" at the first up-to-date, then one line per
// row inserted after it that it receives: "row <id> <ms>", the receive time being
// performance.timeOrigin + performance.now() (Unix milliseconds, sub-ms precision).
// LIVE_SSE=1 follows the shape with server-sent events instead of long-polls.
import { ShapeStream, isChangeMessage, isControlMessage } from '@electric-sql/client'

const url = process.env.SHAPE_URL
if (!url) throw new Error('SHAPE_URL is not set')

const ac = new AbortController()
const stream = new ShapeStream({ url, signal: ac.signal, liveSse: process.env.LIVE_SSE === '1' })
let ready = false
stream.subscribe((messages) => {
  const now = performance.timeOrigin + performance.now()
  for (const m of messages) {
    if (ready && isChangeMessage(m) && m.headers.operation === 'insert') {
      console.log(`row ${m.value.id} ${now.toFixed(3)}`)
    } else if (!ready && isControlMessage(m) && m.headers.control === 'up-to-date') {
      ready = true
      console.log('ready')
    }
  }
}, (err) => {
  console.error('shapebench client:', err)
  process.exit(1)
})

// The bench closes stdin when it is done.
process.stdin.resume()
process.stdin.on('end', () => {
  ac.abort()
  process.exit(0)
})
