package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestDecodeRoundTrip(t *testing.T) {
	ref := "7"
	f := New(nil, &ref, "transfer:ABCD2345", RequestRecords, RecordsRequest{Table: "users", Offset: 10, Limit: 5})
	g, err := Decode(f.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if g.JoinRef != nil || *g.Ref != "7" || g.Topic != f.Topic || g.Event != RequestRecords {
		t.Fatalf("decoded %+v", g)
	}
	var req RecordsRequest
	if err := g.Unpack(&req); err != nil || req.Table != "users" || req.Offset != 10 || req.Limit != 5 {
		t.Fatalf("payload %+v %v", req, err)
	}
	// PhoenixKit clients may send numeric refs.
	g, err = Decode([]byte(`[1, 2, "phoenix", "heartbeat", {}]`))
	if err != nil || *g.JoinRef != "1" || *g.Ref != "2" {
		t.Fatalf("numeric refs: %+v %v", g, err)
	}
}

func TestDecodeRefusesMalformedFrames(t *testing.T) {
	cases := map[string]string{
		"not json":          `hello`,
		"object":            `{"topic": "x"}`,
		"short array":       `[null, null, "t", "e"]`,
		"long array":        `[null, null, "t", "e", {}, 1]`,
		"topic not string":  `[null, null, 5, "e", {}]`,
		"empty event":       `[null, null, "t", "", {}]`,
		"payload array":     `[null, null, "t", "e", []]`,
		"payload string":    `[null, null, "t", "e", "x"]`,
		"ref object":        `[null, {}, "t", "e", {}]`,
		"trailing data":     `[null, null, "t", "e", {}] []`,
		"bad utf8":          "[null, null, \"t\xff\", \"e\", {}]",
		"topic too long":    `[null, null, "` + strings.Repeat("t", 300) + `", "e", {}]`,
		"unterminated":      `[null, null, "t", "e", {`,
		"nested bomb-ish":   `[null, null, "t", "e", ` + strings.Repeat("[", 100) + `]`,
		"number as payload": `[null, null, "t", "e", 1]`,
	}
	for name, in := range cases {
		_, err := Decode([]byte(in))
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != ErrMalformedFrame {
			t.Errorf("%s: got %v, want a malformed_frame error", name, err)
		}
	}
	big := []byte(`[null, null, "t", "e", {"x": "` + strings.Repeat("a", MaxFrameSize) + `"}]`)
	var fe *FrameError
	if _, err := Decode(big); !errors.As(err, &fe) || fe.Code != ErrFrameTooLarge {
		t.Fatalf("oversized: %v", err)
	}
}

func TestBatchRoundTripAndCorruption(t *testing.T) {
	c := NewCodec()
	defer c.Close()
	data := bytes.Repeat([]byte("1\tsome text\t\\N\n"), 1000)
	for _, compress := range []bool{false, true} {
		frame, err := c.EncodeBatch(nil, Batch{Stream: 3, Seq: 9, Rows: 1000, LastKey: []string{"1000", "x\ty"}, Data: data}, compress)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.DecodeBatch(frame)
		if err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if b.Stream != 3 || b.Seq != 9 || b.Rows != 1000 || !bytes.Equal(b.Data, data) || b.LastKey[1] != "x\ty" {
			t.Fatalf("compress=%v: decoded %+v", compress, b.LastKey)
		}
		if compress && len(frame) > len(data)/5 {
			t.Fatalf("compressed frame is %d bytes for %d", len(frame), len(data))
		}
		// Every single-byte corruption of the payload or header is caught.
		for _, i := range []int{0, 4, 21, 25, 29, headerSize + 20, len(frame) - 1} {
			bad := append([]byte(nil), frame...)
			bad[i] ^= 0x55
			if _, err := c.DecodeBatch(bad); err == nil {
				t.Fatalf("compress=%v: corruption at byte %d not detected", compress, i)
			}
		}
		if _, err := c.DecodeBatch(frame[:len(frame)-3]); err == nil {
			t.Fatalf("compress=%v: truncated frame accepted", compress)
		}
	}
}

func TestBatchRefusesDecompressionBombs(t *testing.T) {
	c := NewCodec()
	defer c.Close()
	// A tiny frame that inflates to 32 MiB while declaring 1 KiB.
	enc, _ := zstd.NewWriter(nil)
	bomb := enc.EncodeAll(make([]byte, 32<<20), nil)
	frame, err := c.EncodeBatch(nil, Batch{Stream: 1, Seq: 1, Rows: 1, Data: make([]byte, 1024)}, false)
	if err != nil {
		t.Fatal(err)
	}
	frame = append(frame[:headerSize+len("null")], bomb...)
	frame[4] = flagZstd
	if _, err := c.DecodeBatch(frame); err == nil || !strings.Contains(err.Error(), "inflates past") {
		t.Fatalf("bomb: %v", err)
	}
	// A header declaring more than the limit is refused before any work.
	frame[20], frame[21] = 0xff, 0xff
	var fe *FrameError
	if _, err := c.DecodeBatch(frame); !errors.As(err, &fe) || fe.Code != ErrFrameTooLarge {
		t.Fatalf("declared size over the limit: %v", err)
	}
}
