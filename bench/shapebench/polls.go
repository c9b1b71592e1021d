package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// pollers is the clients child process (this program re-executed with -polls),
// holding the idle long-polls: a process of its own, so that neither it nor the
// host needs more file descriptors than the limit allows.
type pollers struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

// pollReport is what the clients child prints once every poll got the change (or
// its time ran out). Times are Unix milliseconds.
type pollReport struct {
	Got     int       `json:"got"`
	Errors  int64     `json:"errors"`
	Repolls int64     `json:"repolls"` // live polls that ended empty (20 s) and were renewed
	Times   []float64 `json:"times"`   // when each poll got the change, sorted
}

func startPollers(n, rate int, shapeURL, handle, offset string) (*pollers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-polls", fmt.Sprint(n), "-ramp", fmt.Sprint(rate), "-url", shapeURL, "-handle", handle, "-offset", offset)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &pollers{cmd: cmd, out: bufio.NewReader(out)}, nil
}

// sent waits until the child has written every poll's request.
func (p *pollers) sent() error {
	line, err := p.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("clients: %w", err)
	}
	if !strings.HasPrefix(line, "sent") {
		return fmt.Errorf("clients: %s", line)
	}
	return nil
}

// report waits for the child's report and for it to exit.
func (p *pollers) report() (pollReport, error) {
	var r pollReport
	line, err := p.out.ReadString('\n')
	if err == nil {
		err = json.Unmarshal([]byte(line), &r)
	}
	if werr := p.cmd.Wait(); err == nil {
		err = werr
	}
	return r, err
}

// wireMessage is the part of a message of Electric's wire format the clients read:
// a row's operation (a control message has none).
type wireMessage struct {
	Headers struct {
		Operation string `json:"operation"`
	} `json:"headers"`
}

// runPolls is the child: n concurrent live long-polls of the shape at shapeURL
// from (handle, offset), each on its own connection, like n Electric clients
// caught up and waiting, started at rate a second (0: as fast as they
// connect). A poll that ends empty (the server's 20 s) is renewed
// from the offset it was given, as a client does. It prints "sent" once every
// request is written, then, once every poll got a change or after 2 minutes, one
// pollReport line.
func runPolls(n, rate int, shapeURL, handle, offset string) error {
	raiseFDLimit()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: n,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	client := &http.Client{Transport: tr, Timeout: 90 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		errs, repolls atomic.Int64
		mu            sync.Mutex
		times         []float64
		wrote         sync.WaitGroup
		done          sync.WaitGroup
	)
	// At most 200 connections being opened at once: the listen backlog is finite,
	// and a SYN it drops costs a second.
	opening := make(chan struct{}, 200)
	wrote.Add(n)
	done.Add(n)
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		opening <- struct{}{}
		go func() {
			defer done.Done()
			first := true
			firstDone := func() {
				if first {
					first = false
					<-opening
					wrote.Done()
				}
			}
			defer firstDone()
			off, cursor := offset, ""
			for ctx.Err() == nil {
				q := url.Values{"offset": {off}, "handle": {handle}, "live": {"true"}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { firstDone() },
				}), "GET", shapeURL+"?"+q.Encode(), nil)
				resp, err := client.Do(req)
				if err != nil {
					firstDone()
					errs.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				now := float64(time.Now().UnixNano()) / 1e6
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				var msgs []wireMessage
				if err := json.Unmarshal(body, &msgs); err != nil {
					errs.Add(1)
					continue
				}
				if slices.ContainsFunc(msgs, func(m wireMessage) bool { return m.Headers.Operation != "" }) {
					mu.Lock()
					times = append(times, now)
					mu.Unlock()
					return
				}
				repolls.Add(1)
				off, cursor = resp.Header.Get("electric-offset"), resp.Header.Get("electric-cursor")
			}
		}()
	}
	wrote.Wait()
	fmt.Println("sent")
	done.Wait()
	slices.Sort(times)
	b, _ := json.Marshal(pollReport{Got: len(times), Errors: errs.Load(), Repolls: repolls.Load(), Times: times})
	fmt.Println(string(b))
	return nil
}
