package sdk

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// Host is a module's handle on the host that runs it.
type Host struct {
	c *transport.HostClient
}

// Settings fetches the module's current settings.
func (h *Host) Settings(ctx context.Context) (Settings, int64, error) {
	s, err := h.c.GetSettings(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("get settings: %w", err)
	}
	return Settings(s.Values), s.Revision, nil
}

// SetSettings changes some of the module's own settings. Secrets are given in plain
// text and hashed by the host. A key locked by the host's config file is refused
// with ErrLocked.
func (h *Host) SetSettings(ctx context.Context, values map[string]string) error {
	if err := h.c.SetSettings(ctx, values); err != nil {
		return fmt.Errorf("set settings: %w", err)
	}
	return nil
}

// Call calls operation op of module target through the host, which tells target
// that this module is calling. in is sent as JSON; the result is decoded into out
// (which may be nil). Errors keep their code: errors.Is(err, ErrModuleDisabled).
func (h *Host) Call(ctx context.Context, target, op string, in, out any) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("call %s.%s: encode input: %w", target, op, err)
	}
	res, err := h.c.CallPlugin(ctx, target, op, payload)
	if err != nil {
		return fmt.Errorf("call %s.%s: %w", target, op, err)
	}
	if out != nil && len(res) > 0 {
		if err := json.Unmarshal(res, out); err != nil {
			return fmt.Errorf("call %s.%s: decode output: %w", target, op, err)
		}
	}
	return nil
}

// Publish sends a text message to every open WebSocket connection of this module on
// route ("" = all its routes) and returns how many received it.
func (h *Host) Publish(ctx context.Context, route string, text []byte) (int, error) {
	return h.c.Publish(ctx, route, transport.Message{Kind: transport.Text, Data: text})
}

// Audit writes an entry to the host's audit log. Never put secrets in detail.
func (h *Host) Audit(ctx context.Context, action, actor string, detail map[string]any) error {
	return h.c.Audit(ctx, action, actor, detail)
}
