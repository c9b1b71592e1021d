package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
)

// liveMsg is a message from a page.
type liveMsg struct {
	Op            string            `json:"op"`
	Page          string            `json:"page,omitempty"`
	Owner         string            `json:"owner,omitempty"`
	Job           string            `json:"job,omitempty"`
	ID            string            `json:"id,omitempty"`
	URL           string            `json:"url,omitempty"`
	Code          string            `json:"code,omitempty"`
	Password      string            `json:"password,omitempty"`
	Tables        []string          `json:"tables,omitempty"`
	Strategy      string            `json:"strategy,omitempty"`
	Strategies    map[string]string `json:"strategies,omitempty"`
	CreateMissing bool              `json:"create_missing,omitempty"`
	// Pull names the interrupted pull to resume (resume).
	Pull string `json:"pull,omitempty"`
	// Handle names the shape to stream (subscribe, shape page).
	Handle string `json:"handle,omitempty"`
}

// ServeLive is the admin pages' socket (/live): the Send page's live list of
// receivers and approvals, the Receive page's connection and transfer, and the
// shape page's rows (shapeview.go). A page says hello first, naming itself.
func (a *Admin) ServeLive(ctx context.Context, c *sdk.Conn) error {
	st, err := a.current()
	if err != nil {
		return c.Reject(http.StatusServiceUnavailable, "sync is starting")
	}
	_, data, err := c.ReadMessage()
	if err != nil {
		return nil
	}
	var hello liveMsg
	if json.Unmarshal(data, &hello) != nil || hello.Op != "hello" {
		return c.Close(sdk.ClosePolicy, "say hello first")
	}
	actor := "admin:" + sdk.CallerFrom(ctx).User
	switch hello.Page {
	case "send":
		if !strings.HasPrefix(hello.Owner, "page:") {
			return c.Close(sdk.ClosePolicy, "unknown page")
		}
		return a.liveSend(ctx, c, st, hello.Owner, actor)
	case "receive":
		return a.liveReceive(ctx, c, st, hello.Job, actor)
	case "shape":
		return a.liveShape(ctx, c)
	}
	return c.Close(sdk.ClosePolicy, "unknown page")
}

// writeJSON sends v to a page.
func writeJSON(c *sdk.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteText(string(b))
}

// readOps reads page messages into a channel until the socket closes.
func readOps(c *sdk.Conn) <-chan liveMsg {
	ops := make(chan liveMsg, 4)
	go func() {
		defer close(ops)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m liveMsg
			if json.Unmarshal(data, &m) == nil {
				ops <- m
			}
		}
	}()
	return ops
}

// resendEvery is how often the Send page gets its view even when nothing changed.
const resendEvery = 10 * time.Second

// sendView is what the Send page shows: its receivers, the approvals they wait
// for, and whether its code still lives.
type sendView struct {
	Type      string             `json:"type"`
	Sessions  []session.Session  `json:"sessions"`
	Pending   []session.Approval `json:"pending"`
	CodeAlive bool               `json:"code_alive"`
}

// liveSend is the Send page's socket: it renews the page's sessions' lease, sends
// the page's view whenever it changes, and takes the admin's approvals and denials.
func (a *Admin) liveSend(ctx context.Context, c *sdk.Conn, st *site.Site, owner, actor string) error {
	// The page is there as long as this socket renews its sessions' lease; the lease,
	// not this process, is what every replica goes by.
	defer a.pages.disconnected(ctx, owner)
	ops := readOps(c)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last sendView
	var lastTouch, lastSent time.Time
	for {
		if time.Since(lastTouch) >= a.pages.touchEvery {
			if err := st.Sessions.Touch(ctx, owner); err != nil && ctx.Err() == nil {
				a.log.Warn("renew page sessions", "owner", owner, "err", err)
			}
			lastTouch = time.Now()
		}
		v := sendView{Type: "send", Sessions: []session.Session{}, Pending: []session.Approval{}}
		all, err := st.Sessions.List(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("send page: list sessions", "err", err)
		}
		mine := map[string]bool{}
		for _, se := range all {
			if se.Owner == owner {
				v.CodeAlive = true
				mine[se.ID] = true
				if se.UsedAt != nil {
					se.LeaseUntil = time.Time{} // renewed all the time; not worth a message
					v.Sessions = append(v.Sessions, se)
				}
			}
		}
		pending, err := st.Sessions.Pending(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("send page: pending approvals", "err", err)
		}
		for _, a := range pending {
			if mine[a.SessionID] {
				v.Pending = append(v.Pending, a)
			}
		}
		// Changes go out at once; an unchanged view is repeated every resendEvery, so
		// an idle socket is never silent for long (proxies drop silent sockets).
		if !reflect.DeepEqual(v, last) || time.Since(lastSent) >= resendEvery {
			if err := writeJSON(c, v); err != nil {
				return nil
			}
			last, lastSent = v, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ops:
			if !ok {
				return nil
			}
			var err error
			switch m.Op {
			case "approve":
				err = st.Sessions.Approve(ctx, m.ID, actor)
			case "deny":
				err = st.Sessions.Deny(ctx, m.ID, actor)
			}
			if err != nil {
				_ = writeJSON(c, map[string]string{"type": "error", "message": "That request was already decided or has gone."})
			}
		case <-tick.C:
		}
	}
}
