package sender

import (
	"errors"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// A change whose names and values pass the limit ends the follow as changed (its
// slot goes and the receiver copies again), naming the table; changes within it
// pass, however many.
func TestTooLargeEndsTheFollowAsChanged(t *testing.T) {
	v := strings.Repeat("x", 90)
	small := wire.Change{Op: wire.OpUpdate, Table: "public.docs", New: map[string]*string{"id": &v}, Old: map[string]*string{"id": nil}}
	if err := tooLarge([]wire.Change{small, small, small}, 100); err != nil {
		t.Fatalf("changes of %d bytes each refused at 100: %v", small.Bytes(), err)
	}
	big := small
	big.Old = map[string]*string{"id": &v}
	err := tooLarge([]wire.Change{small, big}, 100)
	var changed *followChanged
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), "public.docs holds 184 bytes") {
		t.Fatalf("a change of %d bytes at 100: %v", big.Bytes(), err)
	}
}
