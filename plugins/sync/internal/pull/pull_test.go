package pull

import (
	"errors"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// Every pull refuses an unknown strategy, the default's or a table's, before it
// connects; "" is skip.
func TestPlanStrategies(t *testing.T) {
	for _, p := range []Plan{
		{Strategy: "replace"},
		{Strategy: "merge", Strategies: map[string]string{"orders": "upsert"}},
	} {
		if err := p.Check(); !errors.Is(err, importer.ErrBadStrategy) {
			t.Errorf("%+v: %v, want ErrBadStrategy", p, err)
		}
	}
	s, err := Plan{Strategies: map[string]string{"orders": "overwrite"}}.strategies()
	if err != nil {
		t.Fatal(err)
	}
	if s.of("orders") != importer.Overwrite || s.of("customers") != importer.Skip {
		t.Fatalf("orders %s, customers %s", s.of("orders"), s.of("customers"))
	}
}
