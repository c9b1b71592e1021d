package host_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/internal/testsupport"
)

func dialWS(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wsURL(s *site, path string) string { return "ws" + strings.TrimPrefix(s.url, "http") + path }

func TestWebSocketEchoTextAndBinary(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	if err := c.WriteMessage(websocket.TextMessage, []byte("héllo ✓")); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 1, 2, 255, 0, 7}
	if err := c.WriteMessage(websocket.BinaryMessage, bin); err != nil {
		t.Fatal(err)
	}
	typ, data, err := c.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(data) != "héllo ✓" {
		t.Fatalf("text echo: %d %q %v", typ, data, err)
	}
	typ, data, err = c.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage || string(data) != string(bin) {
		t.Fatalf("binary echo: %d %v %v", typ, data, err)
	}
}

func TestWebSocketCloseCodesBothWays(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})

	// Plugin → client.
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("close:4001:plugin says bye"))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "plugin says bye" {
		t.Fatalf("client saw %v, want close 4001 'plugin says bye'", err)
	}

	// Client → plugin.
	c2 := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c2.WriteMessage(websocket.TextMessage, []byte("ready"))
	if _, _, err := c2.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	_ = c2.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "client says bye"), time.Now().Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := testsupport.Get(t, s.url+"/fiberkit/tm/lastclose")
		if body == "4002 client says bye" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin saw close %q, want '4002 client says bye'", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebSocketTenThousandMessagesInOrder(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	const n = 10000
	_ = c.WriteMessage(websocket.TextMessage, []byte("seq:"+strconv.Itoa(n)))
	for i := 0; i < n; i++ {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(data) != strconv.Itoa(i) {
			t.Fatalf("message %d arrived as %q", i, data)
		}
	}
	// And client → plugin order: echo n messages.
	go func() {
		for i := 0; i < n; i++ {
			_ = c.WriteMessage(websocket.TextMessage, []byte("m"+strconv.Itoa(i)))
		}
	}()
	for i := 0; i < n; i++ {
		_, data, err := c.ReadMessage()
		if err != nil || string(data) != "m"+strconv.Itoa(i) {
			t.Fatalf("echo %d: %q %v", i, data, err)
		}
	}
}

// Eight goroutines of the plugin write to one connection at once. The test module is
// built with -race, so a data race in the SDK's write path is reported by the plugin
// (and fails the test); messages must arrive whole and, per writer, in order.
func TestWebSocketConcurrentWritersInPlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("concurrent:500"))
	last := map[string]int{}
	got, switches := 0, 0
	prevWriter := ""
	maxInFlight := 0
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if rest, ok := strings.CutPrefix(string(data), "concurrent-done:"); ok {
			maxInFlight, _ = strconv.Atoi(rest)
			break
		}
		var g string
		var i int
		if _, err := fmt.Sscanf(strings.Replace(string(data), "-", " ", 1), "%s %d", &g, &i); err != nil {
			t.Fatalf("garbled message %q", data)
		}
		if prev, ok := last[g]; ok && i != prev+1 {
			t.Fatalf("writer %s: %d after %d", g, i, prev)
		}
		if g != prevWriter {
			switches++
			prevWriter = g
		}
		last[g] = i
		got++
	}
	if got != 8*500 || len(last) != 8 {
		t.Fatalf("got %d messages from %d writers, want %d from 8", got, len(last), 8*500)
	}
	// The writes really overlapped: several goroutines were inside WriteText at once,
	// and the client saw their messages interleaved, not one writer after another.
	t.Logf("at most %d writers inside WriteText at once; the writer changed %d times", maxInFlight, switches)
	if maxInFlight < 2 || switches <= 8 {
		t.Fatalf("writes did not overlap: at most %d writers at once, %d writer changes", maxInFlight, switches)
	}
	// The plugin's race detector said nothing (its report would be in the logs once
	// the plugin's stderr has been read to the end, at Close).
	_ = s.kit.Close()
	if strings.Contains(s.logs.String(), testsupport.RaceReport) {
		t.Fatalf("the plugin reported a data race")
	}
}

// A message over MaxFrameSize closes the connection with 1009 on both sides: the
// client gets the close frame (the websocket library writes it when the read limit is
// hit) and the host then ends the connection; the plugin is told by the bridge, with
// code 1009 and the reason, and the module keeps serving.
func TestWebSocketOversizedFrameClosesWith1009(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}, maxFrame: 64 << 10})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	// A message just under the limit goes through.
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.ReadMessage(); err != nil || len(data) != 64<<10 {
		t.Fatalf("a message of MaxFrameSize: %d bytes back, %v", len(data), err)
	}
	_ = c.WriteMessage(websocket.BinaryMessage, make([]byte, 65<<10))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized frame: %v, want close 1009", err)
	}
	// Nothing follows the close frame: the host ends the connection.
	// (It may end with a reset: the rest of the oversized message was never read.)
	_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c.NetConn())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the close frame the host did not end the connection: %v (%d bytes more)", err, n)
	}
	if n > 0 {
		// In particular no second close frame (the plugin's answer) follows the first.
		t.Fatalf("%d bytes followed the close frame", n)
	}
	// The plugin saw the client's connection end as 1009 with the bridge's reason.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = testsupport.Get(t, s.url+"/fiberkit/tm/lastclose")
		if body != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if body != "1009 message too big" {
		t.Fatalf("plugin saw close %q, want '1009 message too big'", body)
	}
	// The module still serves WebSockets.
	c2 := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c2.WriteMessage(websocket.TextMessage, []byte("still here"))
	if _, data, err := c2.ReadMessage(); err != nil || string(data) != "still here" {
		t.Fatalf("after the oversized frame: %q %v", data, err)
	}
}

// floodState is the test module's report on its flood command.
type floodState struct {
	Sent  int64   `json:"sent"`
	Ended bool    `json:"ended"`
	End   *string `json:"end"`
}

// A client that asks for 200 MB and never reads: the plugin is back-pressured (it
// cannot send more than the buffers on the way hold, and stops), the host's memory
// stays flat, and when the write to the client times out (30 s) the host ends the
// connection, which the plugin sees as a failed send and the client as the end of
// the stream.
func TestWebSocketClientThatNeverReadsDoesNotGrowHostMemory(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	flood := func() floodState {
		t.Helper()
		code, body := testsupport.Get(t, s.url+"/fiberkit/tm/flood")
		if code != 200 {
			t.Fatalf("GET /flood: %d %s", code, body)
		}
		var f floodState
		decodeJSON(t, body, &f)
		return f
	}
	resetPeak(t, os.Getpid())
	before := peakRSS(t, os.Getpid())
	// Ask for 200 MB of 64 KB messages and never read them.
	const asked = 3200
	start := time.Now()
	_ = c.WriteMessage(websocket.TextMessage, []byte("flood:"+strconv.Itoa(asked)))

	// Back-pressure: after a few seconds the plugin has stopped sending, far short of
	// what it was asked for, and stays stopped while the client does not read.
	time.Sleep(4 * time.Second)
	stalled := flood()
	if stalled.Ended || stalled.Sent == 0 || stalled.Sent >= asked/4 {
		t.Fatalf("after 4 s the plugin had sent %d of %d messages (ended %v): want it stalled by back-pressure", stalled.Sent, asked, stalled.Ended)
	}
	var end floodState
	for {
		time.Sleep(250 * time.Millisecond)
		end = flood()
		if end.Ended {
			break
		}
		if end.Sent != stalled.Sent {
			t.Fatalf("the plugin sent on to a client that does not read: %d messages, then %d", stalled.Sent, end.Sent)
		}
		if time.Since(start) > 38*time.Second {
			t.Fatalf("the host did not end the connection to a client that never reads within %s (write timeout 30 s)", time.Since(start).Round(time.Second))
		}
	}
	elapsed := time.Since(start)
	growth := peakRSS(t, os.Getpid()) - before
	t.Logf("plugin stalled at %d messages (%d MB); connection ended after %s: %s; host peak RSS grew %d KB",
		stalled.Sent, stalled.Sent>>4, elapsed.Round(100*time.Millisecond), *end.End, growth>>10)
	if growth > 40<<20 {
		t.Fatalf("host memory grew %d MB for a client that never reads", growth>>20)
	}
	if end.Sent >= asked || !strings.HasPrefix(*end.End, "write failed") {
		t.Fatalf("flood ended with %d of %d sent: %q, want a failed write", end.Sent, asked, *end.End)
	}
	// The host still serves others.
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("host stuck: %d %q", code, body)
	}
	// The client, reading at last, gets what was buffered on the way and then the end
	// of the connection, not the rest of the 200 MB.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for {
		_, _, err := c.ReadMessage()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection is still open after the host gave up on it (%d messages read)", got)
			}
			t.Logf("client read %d buffered messages, then: %v", got, err)
			break
		}
		got++
	}
	if got >= asked {
		t.Fatalf("the client received all %d messages", got)
	}
}

func TestBrowserWebSocketChecksOrigin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	host := strings.TrimPrefix(s.url, "http://")
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-public"), http.Header{"Origin": {"http://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v resp %v, want 403", err, resp)
	}
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws-public"), http.Header{"Origin": {"http://" + host}})
	_ = c.WriteMessage(websocket.TextMessage, []byte("same origin"))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "same origin" {
		t.Fatalf("same origin echo: %q %v", data, err)
	}
}

func TestModuleRejectsWebSocketBeforeUpgrade(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-reject?why=bad+code"), nil)
	if err == nil || resp == nil {
		t.Fatalf("rejected socket: err %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || string(body) != "no entry: bad code" {
		t.Fatalf("reject gave %d %q, want 403 'no entry: bad code'", resp.StatusCode, body)
	}
}

func TestWebSocketTheModuleDoesNotServeIs404(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-not-served"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unserved websocket: err %v resp %v, want 404", err, resp)
	}
	// The module is unharmed.
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after unserved websocket: %d %q", code, body)
	}
}

// Pipelined messages of every frame-length class (7-bit, 16-bit, 64-bit lengths) and
// both types come back whole, typed and in order through the bridge, which sends
// queued small messages to the module as batches and writes those queued for the
// client in one write.
func TestWebSocketBatchedMessagesKeepBoundariesTypesAndOrder(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	sizes := []int{1, 125, 126, 127, 1000, 16 << 10, 16<<10 + 1, 65535, 65536, 70000}
	type msg struct {
		typ  int
		data []byte
	}
	var want []msg
	for round := 0; round < 30; round++ {
		for i, n := range sizes {
			typ := websocket.TextMessage
			if (round+i)%3 == 0 {
				typ = websocket.BinaryMessage
			}
			want = append(want, msg{typ, bytes.Repeat([]byte{byte('a' + (round+i)%26)}, n)})
		}
		for i := 0; i < 20; i++ {
			want = append(want, msg{websocket.TextMessage, []byte("m" + strconv.Itoa(round*20+i))})
		}
	}
	go func() {
		for _, m := range want {
			if err := c.WriteMessage(m.typ, m.data); err != nil {
				return
			}
		}
	}()
	for i, w := range want {
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != w.typ || !bytes.Equal(data, w.data) {
			t.Fatalf("message %d: got type %d, %d bytes; want type %d, %d bytes", i, typ, len(data), w.typ, len(w.data))
		}
	}
}

// A slow client that pings while the bridge is blocked writing a batch of frames to
// it still gets every message. Every write to the client, the pong included, is made
// by the bridge's writer loop with its own deadline; when the reader wrote the pong
// itself, with a 1 s deadline, that deadline also applied to the batched write in
// flight and cut the client off after 1 s.
func TestWebSocketPongDoesNotCutOffABatchedWriteToASlowClient(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	// A small receive buffer, set before connecting (the window it allows is then
	// advertised from the start): the bridge's writes block until the client reads.
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	d := websocket.Dialer{NetDialContext: nd.DialContext}
	c, _, err := d.Dial(wsURL(s, "/fiberkit/tm/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pongs := make(chan string, 4)
	c.SetPongHandler(func(d string) error {
		select {
		case pongs <- d:
		default:
		}
		return nil
	})
	// 4 MiB in messages small enough to be written in batches.
	const n, size = 256, 16 << 10
	if err := c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("burst:%d:%d", n, size))); err != nil {
		t.Fatal(err)
	}
	// The bridge is soon blocked writing to the client, which reads nothing yet.
	time.Sleep(300 * time.Millisecond)
	if err := c.WriteControl(websocket.PingMessage, []byte("while-blocked"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // well past the pong's old 1 s deadline
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; i++ {
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d of %d: %v (the write to the slow client was cut off)", i, n, err)
		}
		if typ != websocket.BinaryMessage || len(data) != size || data[0] != byte(i) || data[size-1] != byte(i) {
			t.Fatalf("message %d: type %d, %d bytes, first %d", i, typ, len(data), data[0])
		}
	}
	// The pong came among them or comes before the echo of a later message.
	if err := c.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "after" {
		t.Fatalf("after the burst: %q %v", data, err)
	}
	select {
	case p := <-pongs:
		if p != "while-blocked" {
			t.Fatalf("pong %q", p)
		}
	default:
		t.Fatal("the ping was not answered")
	}
}
