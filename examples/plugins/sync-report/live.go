package main

// A live table in a browser page (Phoenix.Sync's LiveView streams): GET /notices is a
// page whose script opens the browser WebSocket /notices-live, which streams the
// shape of table notices through the SDK and forwards its rows as they change.
//
// Try it: build the plugins (make plugins) and run the example host app
// (go run ./examples/hostapp) with a PostgreSQL that has wal_level = logical (the
// throwaway one it starts does); turn on Sync's Live sync setting on the admin's
// Sync settings page; make a table notices with a primary key (CREATE TABLE notices
// (id int PRIMARY KEY, title text)); open
// http://127.0.0.1:8080/fiberkit/sync-report/notices (the host app's home page links
// it), then insert, update or delete rows in psql and watch the page follow. It
// shows every row of notices to whoever can open it — a public board: data of one
// user belongs in a shape narrowed to the caller (Where: "owner = $1" with
// sdk.CallerFrom(ctx).User), as the todo example does.
//
// The socket's messages, all JSON:
//
//	{"type":"columns","columns":[…]}  first, and again after a must-refetch: empty the table
//	{"type":"rows","changes":[{"op":"insert|update|delete","key":k,"value":{col: text|null}}],"up_to_date":bool}
//	{"type":"limit","limit":n}        the page holds n rows; the stream stopped
//	{"type":"error","message":m}      the stream ended

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// noticesTable is the table the page shows: fixed, never taken from the request.
const noticesTable = "notices"

// noticesLimit bounds the rows a page holds.
const noticesLimit = 10000

// liveRoutes serves GET /notices and returns the /notices-live socket's handler.
func liveRoutes(mux *http.ServeMux, mod func() *syncapi.Module) sdk.WebSocketHandler {
	mux.HandleFunc("GET /notices", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		nonce := base64.RawStdEncoding.EncodeToString(b)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+"'")
		_ = noticesPage.Execute(w, map[string]any{"Nonce": nonce, "Table": noticesTable, "Limit": noticesLimit})
	})
	return func(ctx context.Context, c *sdk.Conn) error {
		m := mod()
		if m == nil {
			return c.Reject(http.StatusServiceUnavailable, "starting")
		}
		if err := c.Accept(); err != nil {
			return nil
		}
		// The page sends nothing: reading notices it going, and ends the stream.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			defer cancel()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		if err := streamNotices(ctx, c, m); err != nil && ctx.Err() == nil {
			_ = writeMsg(c, map[string]string{"type": "error", "message": err.Error()})
		}
		return nil
	}
}

// streamNotices streams the notices shape to the page until ctx ends or it fails.
func streamNotices(ctx context.Context, c *sdk.Conn, m *syncapi.Module) error {
	st, err := m.Stream(ctx, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: noticesTable}})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := sendColumns(ctx, c, m); err != nil {
		return err
	}
	held := map[string]bool{}
	var batch []rowChange
	flush := func(upToDate bool) error {
		if len(batch) == 0 && !upToDate {
			return nil
		}
		err := writeMsg(c, rowsMsg{Type: "rows", Changes: append([]rowChange{}, batch...), UpToDate: upToDate})
		batch = batch[:0]
		return err
	}
	for {
		msg, err := st.Next()
		if err != nil {
			return err
		}
		h := msg.Message.Headers
		switch {
		case h.Control == syncapi.ControlUpToDate:
			err = flush(true)
		case h.Control == syncapi.ControlMustRefetch:
			// The shape was replaced (TRUNCATE, ALTER TABLE…): start over.
			batch, held = batch[:0], map[string]bool{}
			err = sendColumns(ctx, c, m)
		case h.Operation != "":
			key := msg.Message.Key
			if h.Operation == syncapi.OperationInsert && !held[key] {
				if len(held) >= noticesLimit {
					if err := flush(false); err != nil {
						return err
					}
					if err := writeMsg(c, map[string]any{"type": "limit", "limit": noticesLimit}); err != nil {
						return err
					}
					<-ctx.Done() // the page keeps what it has
					return nil
				}
				held[key] = true
			}
			if h.Operation == syncapi.OperationDelete {
				delete(held, key)
			}
			batch = append(batch, rowChange{Op: h.Operation, Key: key, Value: msg.Message.Value})
			if len(batch) >= 500 {
				err = flush(false)
			}
		}
		if err != nil {
			return err
		}
	}
}

// sendColumns tells the page the table's columns, in table order.
func sendColumns(ctx context.Context, c *sdk.Conn, m *syncapi.Module) error {
	s, err := m.GetSchema(ctx, noticesTable)
	if err != nil {
		return err
	}
	cols := make([]string, len(s.Columns))
	for i, col := range s.Columns {
		cols[i] = col.Name
	}
	return writeMsg(c, map[string]any{"type": "columns", "columns": cols})
}

// rowChange is one row message as the page gets it.
type rowChange struct {
	Op    string             `json:"op"`
	Key   string             `json:"key"`
	Value map[string]*string `json:"value,omitempty"`
}

// rowsMsg is a batch of row changes.
type rowsMsg struct {
	Type     string      `json:"type"`
	Changes  []rowChange `json:"changes"`
	UpToDate bool        `json:"up_to_date"`
}

func writeMsg(c *sdk.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteText(string(b))
}

// noticesPage renders the rows with textContent only: a value is never markup.
var noticesPage = template.Must(template.New("notices").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live {{.Table}}</title>
<style nonce="{{.Nonce}}">
body { font-family: system-ui, sans-serif; margin: 1.5rem; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; }
td.null { color: #888; font-style: italic; }
.changed { background: #fff1a8; }
#notice { background: #fde4e1; padding: .4rem .6rem; }
</style>
</head>
<body>
<h1>Live <code>{{.Table}}</code></h1>
<p id="state" role="status" aria-live="polite">Connecting…</p>
<p id="notice" role="alert" hidden></p>
<table id="rows"><thead><tr></tr></thead><tbody></tbody></table>
<script nonce="{{.Nonce}}">
(function () {
  'use strict';
  var limit = {{.Limit}};
  var head = document.querySelector('#rows thead tr'), body = document.querySelector('#rows tbody');
  var state = document.getElementById('state'), notice = document.getElementById('notice');
  var columns = [], rows = new Map(), live = false, retry = 500;
  function warn(text) { notice.hidden = !text; notice.textContent = text || ''; }
  function say() { state.textContent = rows.size + (rows.size === 1 ? ' row' : ' rows') + (live ? ' · live' : ' · loading…'); }
  function cell(td, v) { td.textContent = v === null ? 'null' : v; td.className = v === null ? 'null' : ''; }
  function flash(e) { e.classList.add('changed'); setTimeout(function () { e.classList.remove('changed'); }, 1200); }
  function apply(c) {
    var tr = rows.get(c.key);
    if (c.op === 'delete') { if (tr) { tr.remove(); rows.delete(c.key); } return; }
    if (!tr && c.op === 'insert') {
      if (rows.size >= limit) return;
      tr = document.createElement('tr'); tr.setAttribute('data-key', c.key);
      columns.forEach(function () { tr.appendChild(document.createElement('td')); });
      rows.set(c.key, tr); body.appendChild(tr);
      if (live) flash(tr);
    }
    if (!tr) return;
    columns.forEach(function (col, i) {
      if (!c.value || !Object.prototype.hasOwnProperty.call(c.value, col)) return;
      cell(tr.children[i], c.value[col]);
      if (c.op === 'update') flash(tr.children[i]);
    });
  }
  function connect() {
    var ws = new WebSocket(new URL('notices-live', location.href).href.replace(/^http/, 'ws'));
    ws.onopen = function () { retry = 500; };
    ws.onmessage = function (ev) {
      var m = JSON.parse(ev.data);
      if (m.type === 'columns') {
        columns = m.columns; rows = new Map(); live = false; warn('');
        head.textContent = ''; body.textContent = '';
        columns.forEach(function (c) { var th = document.createElement('th'); th.scope = 'col'; th.textContent = c; head.appendChild(th); });
        say();
      } else if (m.type === 'rows') {
        m.changes.forEach(apply);
        if (m.up_to_date) live = true;
        say();
      } else if (m.type === 'limit') {
        warn('More than ' + m.limit + ' rows: showing the first ' + m.limit + ', no longer following changes.');
      } else if (m.type === 'error') {
        warn(m.message);
      }
    };
    ws.onclose = function () {
      live = false; state.textContent = 'Reconnecting…';
      setTimeout(connect, retry); retry = Math.min(retry * 2, 8000);
    };
  }
  connect();
})();
</script>
</body>
</html>
`))
