package sender

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
)

// ErrMaskRule is the reason (wire error code) a request is refused with when a
// masking rule does not fit the table it applies to: the table is not sent at all
// rather than sent unmasked.
const ErrMaskRule = "invalid_mask_rule"

// maskState is what one receiver's connection keeps of masking: the site's key,
// loaded once, and the rules applied to each table it read (for the history).
type maskState struct {
	mu      sync.Mutex
	key     *mask.Key
	applied map[string][]string // table (as listed) → rules in text form
}

// SiteMaskRules are the rules every send of st applies: the secret-column
// defaults for sch's table (when mask_secret_columns is on) under the site's
// mask_rules setting, which wins for the columns it names.
func SiteMaskRules(st *site.Site, sch *catalog.Schema) (mask.Set, error) {
	var base mask.Set
	if st.Settings.Bool("mask_secret_columns") {
		d, err := mask.SecretDefaults(sch)
		if err != nil {
			return nil, err
		}
		base = d
	}
	own, err := mask.Parse(st.Settings.String("mask_rules"))
	if err != nil {
		return nil, fmt.Errorf("the mask_rules setting: %w", err)
	}
	return mask.Merge(base, own), nil
}

// maskKey returns the site's masking key (mask.LoadKey), loaded once per connection.
func (p *peer) maskKey(ctx context.Context) (mask.Key, error) {
	p.masks.mu.Lock()
	defer p.masks.mu.Unlock()
	if p.masks.key != nil {
		return *p.masks.key, nil
	}
	k, err := mask.LoadKey(ctx, p.st.Pool, os.Getenv(remote.KeyEnv))
	if err != nil {
		return k, err
	}
	p.masks.key = &k
	return k, nil
}

// applyMasks resolves the rules that apply to sch's table against it and sets the
// snapshot to read the table through them (exporter.Snapshot.Mask). A rule the
// table cannot take refuses the request (ErrMaskRule, saying which rule and why):
// the table is not sent.
func (p *peer) applyMasks(ctx context.Context, snap *exporter.Snapshot, sch *catalog.Schema) error {
	mt, err := p.maskTable(ctx, snap.Querier(), sch)
	if err != nil {
		return err
	}
	table := catalog.IdentOf(sch).String()
	if err := snap.Mask(ctx, sch, mt); err != nil {
		return err
	}
	p.masks.mu.Lock()
	if p.masks.applied == nil {
		p.masks.applied = map[string][]string{}
	}
	p.masks.applied[table] = mt.Rules().Strings()
	p.masks.mu.Unlock()
	return nil
}

// maskTable resolves, through q, the rules that apply to sch's table for this
// receiver: the site's, then a permanent connection's on top (its rule wins for
// its column). nil when none applies. A rule the table cannot take is a refusal
// (ErrMaskRule, saying which rule and why): the table is not sent.
func (p *peer) maskTable(ctx context.Context, q catalog.Querier, sch *catalog.Schema) (*mask.Table, error) {
	refuse := func(err error) error {
		return &connection.Refusal{Reason: ErrMaskRule, Detail: fmt.Sprintf("table %s is not sent: %v", catalog.IdentOf(sch), err)}
	}
	rules, err := SiteMaskRules(p.st, sch)
	if err != nil {
		return nil, refuse(err)
	}
	if p.connID != "" {
		c, err := p.st.Conns.Get(ctx, p.connID)
		if err != nil {
			return nil, fmt.Errorf("read the connection's masks: %w", err)
		}
		rules = mask.Merge(rules, mask.Set(c.Limits.Masks))
	}
	if rules, err = withRelatives(ctx, q, sch, rules); err != nil {
		return nil, err
	}
	if len(rules.For(catalog.IdentOf(sch).String())) == 0 {
		return nil, nil
	}
	key, err := p.maskKey(ctx)
	if err != nil {
		return nil, err
	}
	mt, err := rules.Resolve(ctx, q, sch, key)
	var re *mask.RuleError
	if errors.As(err, &re) {
		return nil, refuse(err)
	}
	return mt, err
}

// withRelatives returns the rules for sch's table: its own (and "*" ones), then
// those naming a table above or below it — a partition's rows are read through
// the partitioned table, and the table through its partitions, so a rule on one
// masks the column whichever name a receiver reads. A rule naming the table itself
// beats a relative's, a relative's beats a "*" rule.
func withRelatives(ctx context.Context, q catalog.Querier, sch *catalog.Schema, rules mask.Set) (mask.Set, error) {
	id := catalog.IdentOf(sch)
	ups, err := catalog.Ancestors(ctx, q, id)
	if err != nil {
		return nil, fmt.Errorf("masks of %s: %w", id, err)
	}
	downs, err := catalog.Descendants(ctx, q, id)
	if err != nil {
		return nil, fmt.Errorf("masks of %s: %w", id, err)
	}
	name := id.String()
	byColumn := rules.For(name)
	has := map[string]bool{}
	for _, c := range sch.Columns {
		has[c.Name] = true
	}
	for _, rel := range append(ups, downs...) {
		for _, r := range rules {
			// A child's own columns are not the table's.
			if r.Table != rel.String() || !has[r.Column] {
				continue
			}
			if cur, ok := byColumn[r.Column]; !ok || cur.Table == mask.AnyTable {
				r.Table = name
				byColumn[r.Column] = r
			}
		}
	}
	out := make(mask.Set, 0, len(byColumn))
	for _, r := range byColumn {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b mask.Rule) int { return strings.Compare(a.Column, b.Column) })
	return out, nil
}

// maskedRules returns the rules applied to table (as listed) by this connection's
// last read of it, in text form, for the history.
func (p *peer) maskedRules(table string) []string {
	p.masks.mu.Lock()
	defer p.masks.mu.Unlock()
	return p.masks.applied[table]
}
