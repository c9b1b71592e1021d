package wire

import "testing"

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`[null, "1", "transfer:ABCD2345", "phx_join", {"receiver_info": {"site": "dev"}}]`,
		`["1", "2", "transfer:ABCD2345", "request:records", {"table": "users", "offset": 0, "limit": 100}]`,
		`[1, 2, "phoenix", "heartbeat", {}]`,
		`[null, null, "t", "e", []]`, `[]`, `{}`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			if _, ok := err.(*FrameError); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes the same way.
		again, err := Decode(fr.Encode())
		if err != nil || again.Topic != fr.Topic || again.Event != fr.Event {
			t.Fatalf("re-decode of %q: %v", fr.Encode(), err)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	c := NewCodec()
	defer c.Close()
	for _, compress := range []bool{false, true} {
		frame, _ := c.EncodeBatch(nil, Batch{Stream: 1, Seq: 1, Rows: 2, LastKey: []string{"2"}, Data: []byte("1\ta\n2\tb\n")}, compress)
		f.Add(frame)
	}
	f.Add([]byte("FKB1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := c.DecodeBatch(data)
		if err != nil {
			if _, ok := err.(*FrameError); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if len(b.Data) > MaxBatchBytes {
			t.Fatalf("accepted %d bytes", len(b.Data))
		}
	})
}
