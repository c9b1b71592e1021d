package main_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// freezingProxy forwards TCP both ways until frozen, then holds every byte without
// closing anything: a network (or a sender) that hangs.
// With freezeAfter > 0 it freezes by itself once that many bytes went through.
type freezingProxy struct {
	ln          net.Listener
	frozen      atomic.Bool
	freezeAfter int64
	forwarded   atomic.Int64
	mu          sync.Mutex
	conns       []net.Conn
}

func newFreezingProxy(t *testing.T, target string, freezeAfter int64) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, freezeAfter: freezeAfter}
	t.Cleanup(p.close)
	go func() {
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				cc.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, cc, sc)
			p.mu.Unlock()
			go p.pipe(sc, cc)
			go p.pipe(cc, sc)
		}
	}()
	return p
}

func (p *freezingProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.freezeAfter > 0 && p.forwarded.Add(int64(n)) > p.freezeAfter {
			p.frozen.Store(true)
		}
		for p.frozen.Load() {
			time.Sleep(50 * time.Millisecond) // hold the bytes; close nothing
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *freezingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// The sender goes silent mid-transfer without closing the connection: the client
// notices within its idle timeout and Transfer returns a clear error.
func TestTransferEndsWhenTheSenderGoesSilent(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	proxy := newFreezingProxy(t, strings.TrimPrefix(a.url, "http://"), 0)
	ctx := context.Background() // no deadline: only the idle check can end it
	const idle = 2 * time.Second
	c, err := client.Connect(ctx, "http://"+proxy.ln.Addr().String(), a.newCode(t).Code, client.Options{IdleTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var frozeAt atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
			if p.Batches == 2 && frozeAt.Load() == 0 {
				frozeAt.Store(time.Now().UnixNano())
				proxy.frozen.Store(true)
			}
		}})
		done <- err
	}()
	select {
	case err := <-done:
		took := time.Since(time.Unix(0, frozeAt.Load()))
		if frozeAt.Load() == 0 {
			t.Fatalf("the transfer ended before the network froze: %v", err)
		}
		if !errors.Is(err, client.ErrPeerSilent) || !errors.Is(err, client.ErrClosed) {
			t.Fatalf("transfer error: %v", err)
		}
		if took > idle+3*time.Second {
			t.Fatalf("the transfer ended %s after the network froze (idle timeout %s)", took, idle)
		}
		t.Logf("transfer ended %s after the freeze: %v", took.Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer is still blocked 30 s after the sender went silent")
	}
	if c.Connected() {
		t.Fatal("the client still says it is connected")
	}
}

// A quiet but live sender is not taken for a dead one: heartbeats keep the
// connection going past the idle timeout.
func TestIdleButLiveSenderStaysConnected(t *testing.T) {
	a := seeded(t, siteOptions{})
	ctx := context.Background()
	c, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{IdleTimeout: time.Second, HeartbeatInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(3 * time.Second)
	if _, err := c.ListTables(ctx); err != nil {
		t.Fatalf("after 3 s of quiet: %v", err)
	}
}

// A receiver that vanishes without closing (a frozen network) does not keep the
// sender's snapshot open: the sender ends the connection after its idle time.
func TestSenderEndsASilentReceiver(t *testing.T) {
	a := seeded(t, siteOptions{pluginEnv: []string{"FIBERKIT_SYNC_RECEIVER_IDLE=2s"}})
	proxy := newFreezingProxy(t, strings.TrimPrefix(a.url, "http://"), 0)
	ctx := context.Background()
	c, err := client.Connect(ctx, "http://"+proxy.ln.Addr().String(), a.newCode(t).Code, client.Options{IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetCount(ctx, "customers"); err != nil { // opens the snapshot
		t.Fatal(err)
	}
	open := func() int {
		var n int
		_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&n)
		return n
	}
	if open() == 0 {
		t.Fatal("no snapshot transaction while the receiver is connected")
	}
	proxy.frozen.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sender still holds the silent receiver's snapshot 15 s later")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
