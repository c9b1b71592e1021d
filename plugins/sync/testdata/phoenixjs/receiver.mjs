// A receiver written with the real npm phoenix client (its default reconnect:
// 10, 50, 100, 150, 200 ms … then every 5 s). Driven by plugins/sync/phoenixjs_test.go:
//
//   node receiver.mjs ws://127.0.0.1:PORT/fiberkit/sync CODE
//
// It joins transfer:CODE, lists the tables, then drops its connection the way a
// network does (the socket closes without a clean disconnect), lets the client
// reconnect and rejoin on its own, and asks for a page of records on the rejoined
// channel. It prints one JSON line with what happened and exits 0, or prints the
// error and exits 1.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [endpoint, code] = process.argv.slice(2);
const socket = new Socket(endpoint, { transport: WebSocket, params: { code } });
const seen = { opens: 0, joins: 0, socketErrors: 0, joinReplies: [] };
socket.onOpen(() => seen.opens++);
socket.onError(() => seen.socketErrors++);

const channel = socket.channel(`transfer:${code}`, { receiver_info: { client: "phoenix.js" } });
let joined = () => {};
channel.join()
  .receive("ok", (resp) => { seen.joins++; seen.joinReplies.push(resp); joined(); })
  .receive("error", (resp) => fail(new Error(`join refused: ${JSON.stringify(resp)}`)));

function waitJoins(n) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.joins} joins, want ${n}`)), 20000);
    const check = () => { if (seen.joins >= n) { clearTimeout(timer); resolve(); } };
    joined = check;
    check();
  });
}

let nextRef = 0;
// request pushes event with a ref in its payload (as PhoenixKit's receiver does)
// and resolves with the answer carrying that ref.
function request(event, payload) {
  const ref = `js${++nextRef}`;
  const answer = event.replace("request:", "response:");
  return new Promise((resolve, reject) => {
    const refs = [];
    const done = (fn, v) => { clearTimeout(timer); channel.off(answer, refs[0]); channel.off("response:error", refs[1]); fn(v); };
    const timer = setTimeout(() => done(reject, new Error(`${event}: no answer`)), 10000);
    refs.push(channel.on(answer, (p) => { if (p.ref === ref) done(resolve, p); }));
    refs.push(channel.on("response:error", (p) => { if (p.ref === ref) done(reject, new Error(`${event}: ${p.error}`)); }));
    channel.push(event, { ...payload, ref });
  });
}

function fail(err) {
  console.log(JSON.stringify({ error: String(err && err.message || err), ...seen }));
  process.exit(1);
}

try {
  socket.connect();
  await waitJoins(1);
  const tables = await request("request:tables", {});
  seen.tables = tables.tables.map((t) => t.name).sort();
  // Drop: close the transport under the client, as a network cut does.
  socket.conn.close(4000, "network drop");
  await waitJoins(2);
  const page = await request("request:records", { table: "customers", offset: 0, limit: 5 });
  seen.records = page.records.length;
  seen.firstID = page.records[0].id;
  socket.disconnect();
  console.log(JSON.stringify(seen));
  process.exit(0);
} catch (err) {
  fail(err);
}
