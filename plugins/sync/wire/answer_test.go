package wire

import (
	"encoding/json"
	"testing"
)

func TestAnswerEchoesThePayloadRef(t *testing.T) {
	ref := "7"
	for _, c := range []struct {
		req  string
		v    any
		want string
	}{
		{`{"table":"t","ref":"r2"}`, CountResponse{Table: "t", Count: 3}, `{"ref":"r2","table":"t","count":3}`},
		{`{"ref":12}`, struct{}{}, `{"ref":12}`},
		{`{"table":"t"}`, CountResponse{Table: "t"}, `{"table":"t","count":0}`},
		{`{"ref":{"x":1}}`, struct{}{}, `{}`},
	} {
		a := Answer(Frame{Ref: &ref, Topic: "transfer:X", Event: RequestCount, Payload: json.RawMessage(c.req)}, ResponseCount, c.v)
		if string(a.Payload) != c.want || *a.Ref != "7" {
			t.Errorf("%s: %s", c.req, a.Payload)
		}
	}
	e := ErrorAnswer(Frame{Ref: &ref, Payload: json.RawMessage(`{"ref":"r9"}`)}, ErrBadRequest, "no")
	if string(e.Payload) != `{"error":"bad_request","message":"no","ref":"r9"}` {
		t.Errorf("error %s", e.Payload)
	}
	e = ErrorAnswer(Frame{Ref: &ref, Payload: json.RawMessage(`{}`)}, ErrBadRequest, "")
	if string(e.Payload) != `{"error":"bad_request","ref":"7"}` {
		t.Errorf("error without a payload ref %s", e.Payload)
	}
}
