package wire

import (
	"encoding/json"
	"errors"
	"testing"
)

// docs/protocol.md: new fields are optional and ignored by older peers.
func TestUnpackIgnoresUnknownFieldsButKeepsTypesAndShape(t *testing.T) {
	ref := "3"
	var req RecordsRequest
	f := Frame{Ref: &ref, Topic: "transfer:X", Event: RequestRecords,
		Payload: json.RawMessage(`{"table":"users","offset":10,"limit":5,"order":"desc","hint":{"a":[1,2]}}`)}
	if err := f.Unpack(&req); err != nil || req.Table != "users" || req.Offset != 10 || req.Limit != 5 {
		t.Fatalf("a payload with new fields: %+v, %v", req, err)
	}
	var ack Ack
	f = Frame{Event: StreamAck, Payload: json.RawMessage(`{"stream":1,"seq":2,"credit":1,"window_ms":50}`)}
	if err := f.Unpack(&ack); err != nil || ack.Seq != 2 {
		t.Fatalf("ack with a new field: %+v, %v", ack, err)
	}
	for _, bad := range []string{
		`{"table":7}`,                 // a known field of the wrong type
		`[1,2]`,                       // not an object
		`"x"`,                         // not an object
		`{"table":"a"} {"table":"b"}`, // trailing data
		`{"table":"a"`,                // truncated
		``,
	} {
		var r TableRequest
		err := Frame{Event: RequestSchema, Payload: json.RawMessage(bad)}.Unpack(&r)
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != ErrMalformedFrame {
			t.Errorf("payload %q: %v", bad, err)
		}
	}
}
