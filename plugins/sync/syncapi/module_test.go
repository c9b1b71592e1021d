package syncapi

import (
	"errors"
	"testing"
)

func TestPullErrorNamesTheFailedTables(t *testing.T) {
	res := map[string]TableResult{"b": {Error: "boom"}, "a": {Error: "bang"}, "c": {Rows: 3}}
	if got := FailedTables(res); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("failed tables %v", got)
	}
	var err error = &PullError{Failed: map[string]string{"b": "boom", "a": "bang"}}
	var pe *PullError
	if !errors.As(err, &pe) || err.Error() != "pull: 2 of the tables failed: a: bang; b: boom" {
		t.Fatalf("error %q", err)
	}
}
