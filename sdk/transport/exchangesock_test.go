package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// The exchange socket serves only a connection that starts with its token: a wrong
// token (or none) is disconnected before any request is read, and the handler never
// runs.
func TestExchangeSocketRefusesAWrongToken(t *testing.T) {
	c, f := startFake(t)
	addr, token := c.socket.get()
	if addr == "" || len(token) != exchangeTokenSize {
		t.Fatalf("no exchange socket offered: %q, %d-byte token", addr, len(token))
	}
	wrong := bytes.Clone(token)
	wrong[0] ^= 1
	for name, tok := range map[string][]byte{"wrong": wrong, "short": token[:8]} {
		sc, err := dialExchangeSocket(addr, tok, DefaultMaxMessageSize)
		if err != nil {
			t.Fatal(err)
		}
		if name == "short" {
			// The rest of the token never comes: the token deadline ends it.
			_ = sc.conn.SetDeadline(time.Now().Add(2 * tokenDeadline))
		}
		_ = sc.Send(&pb.ExchangeRequest{Head: &pb.HTTPRequestHead{Method: "POST", Path: "/echo"}, Body: []byte("x")})
		if m, err := sc.Recv(); err == nil {
			t.Fatalf("%s token: answered %+v", name, m)
		}
		sc.Close()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ctxs) != 0 {
		t.Fatalf("the handler ran %d times for connections without the token", len(f.ctxs))
	}
}

// A frame longer than the reader's limit is refused without reading (or allocating)
// it, and the connection is not used again.
func TestExchangeSocketRefusesAnOversizedFrame(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<30)
	err := readFrame(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10))), 1<<20, &pb.ExchangeResponse{})
	if !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	// A truncated frame is an unexpected EOF, not a clean end.
	binary.BigEndian.PutUint32(hdr[:], 100)
	err = readFrame(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10))), 1<<20, &pb.ExchangeResponse{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}

	c, _ := startFake(t)
	addr, token := c.socket.get()
	sc, err := dialExchangeSocket(addr, token, DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	binary.BigEndian.PutUint32(hdr[:], uint32(maxMessageFromEnv()+1))
	if _, err := sc.conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	_ = sc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Recv(); err == nil || errors.Is(err, errFrameTooLarge) {
		t.Fatalf("the plugin did not hang up on an oversized request: %v", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the plugin kept the connection after an oversized request")
	}
}

// When the exchange socket cannot be reached, exchanges go over gRPC streams.
func TestExchangeFallsBackToGRPCWithoutTheSocket(t *testing.T) {
	c, f := startFake(t)
	_, token := c.socket.get()
	c.socket.set("@fiberkit-exchange-nobody-listens", token)
	x, err := c.StartExchange(RequestHead{Method: "POST", Path: "/echo"}, []byte("over grpc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := x.s.conn.(*grpcExchange); !ok {
		t.Fatalf("exchange went over %T", x.s.conn)
	}
	if _, _, body, err := readAll(t, x); err != nil || string(body) != "over grpc" {
		t.Fatalf("fallback exchange: %q %v", body, err)
	}
	if len(f.ctxs) != 1 {
		t.Fatalf("%d handler runs", len(f.ctxs))
	}
}
