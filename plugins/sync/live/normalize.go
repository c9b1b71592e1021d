package live

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/shape"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// normalizeTTL is how long a checked shape definition is reused. Checking one
// costs several catalog queries, and every poll of Electric's API (a request per
// page or long-poll, thousands at once) names its shape; a column added meanwhile
// is seen this much later at most.
const normalizeTTL = 2 * time.Second

// normalizeCap bounds the definitions kept; past it the cache starts afresh.
const normalizeCap = 4096

// shapeCache keeps recently checked shape definitions by their JSON.
type shapeCache struct {
	mu      sync.Mutex
	entries map[string]cachedShape
}

type cachedShape struct {
	s  *shape.Shape
	at time.Time
}

// normalize is shape.Normalize through the cache, a bad definition an
// *InvalidError.
func (e *Engine) normalize(ctx context.Context, spec syncapi.ShapeSpec) (*shape.Shape, error) {
	key, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	e.shapes.mu.Lock()
	c, ok := e.shapes.entries[string(key)]
	e.shapes.mu.Unlock()
	if ok && now.Sub(c.at) < normalizeTTL {
		return c.s, nil
	}
	s, err := e.normalizeFresh(ctx, spec)
	if err != nil {
		return nil, err
	}
	e.shapes.mu.Lock()
	if e.shapes.entries == nil || len(e.shapes.entries) >= normalizeCap {
		e.shapes.entries = map[string]cachedShape{}
	}
	e.shapes.entries[string(key)] = cachedShape{s: s, at: now}
	e.shapes.mu.Unlock()
	return s, nil
}

// normalizeFresh is shape.Normalize, a bad definition an *InvalidError.
func (e *Engine) normalizeFresh(ctx context.Context, spec syncapi.ShapeSpec) (*shape.Shape, error) {
	s, err := shape.Normalize(ctx, e.cfg.Pool, spec)
	var se *shape.Error
	if errors.As(err, &se) {
		return nil, &InvalidError{Err: err}
	}
	return s, err
}
