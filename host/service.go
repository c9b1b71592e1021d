package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/host/settings"
	"github.com/fiberkit/fiberkit/sdk/transport"
)

func errUnknownModule(id string) error {
	return transport.Errorf(transport.CodeUnknownModule, "no module %q", id)
}

// hostService is the host service brokered to one module; it knows which module it
// serves, so the caller identity on CallPlugin comes from the host, never the caller.
type hostService struct {
	kit *Kit
	mod *module
}

func (h *hostService) GetSettings(ctx context.Context) (transport.Settings, error) {
	snap, err := h.kit.settings.Snapshot(ctx, h.mod.man.ID)
	if err != nil {
		return transport.Settings{}, err
	}
	return transport.Settings{Revision: snap.Revision, Values: snap.Map()}, nil
}

func (h *hostService) SetSettings(ctx context.Context, values map[string]string) error {
	return settingsError(h.kit.settings.Set(ctx, h.mod.man.ID, values, "plugin:"+h.mod.man.ID))
}

// settingsError gives settings failures the codes SDK callers branch on.
func settingsError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, settings.ErrLocked) {
		return transport.Errorf(transport.CodeLocked, "%v", err)
	}
	var verr *settings.ValidationError
	if errors.As(err, &verr) {
		return transport.Errorf(transport.CodeInvalidInput, "%v", err)
	}
	return err
}

func (h *hostService) CallPlugin(ctx context.Context, target, op string, payload []byte) ([]byte, error) {
	return h.kit.call(ctx, transport.Caller{Plugin: h.mod.man.ID}, target, op, payload)
}

func (h *hostService) Publish(ctx context.Context, route string, m transport.Message) (int, error) {
	return h.mod.sock.publish(ctx, route, m), nil
}

// Audit records the entry as the plugin's: the actor a plugin names (the user it
// acts for) is only its claim, so it is kept as "plugin:<id> for <actor>" and can
// never pass for the host's own "admin:<user>" entries.
func (h *hostService) Audit(ctx context.Context, action, actor string, detail map[string]any) error {
	return h.kit.audit.Log(ctx, pluginActor(h.mod.man.ID, actor), h.mod.man.ID, action, detail)
}

func pluginActor(module, claimed string) string {
	actor := "plugin:" + module
	if claimed = strings.TrimSpace(claimed); claimed != "" {
		actor += " for " + claimed
	}
	return actor
}

// call runs target's operation for caller. The target must be loaded and enabled;
// the caller's deadline travels with ctx.
func (k *Kit) call(ctx context.Context, caller transport.Caller, target, op string, payload []byte) ([]byte, error) {
	m, ok := k.modules[target]
	if !ok {
		return nil, errUnknownModule(target)
	}
	switch op {
	case OpEnableSystem, OpDisableSystem, OpEnabled:
		return k.systemCall(ctx, caller, m, op)
	}
	if caller.Plugin != "" && !m.man.MayCall(op, caller.Plugin) {
		return nil, transport.Errorf(transport.CodeForbidden, "module %s may not call %s.%s (its module.yaml lists the modules that may)", caller.Plugin, target, op)
	}
	start := time.Now()
	rpc, err := m.client()
	var out []byte
	if err == nil {
		out, err = rpc.Call(ctx, transport.Call{Operation: op, Payload: payload, Caller: caller})
	}
	m.metrics.observeCall(callerLabel(caller), m.opLabel(op), time.Since(start), err)
	return out, err
}

// Call runs a module's operation from the host app's own Go code, as caller user.
// Input and output are JSON bytes; see package sdk for typed helpers.
func (k *Kit) Call(ctx context.Context, user, target, op string, payload []byte) ([]byte, error) {
	out, err := k.call(ctx, transport.Caller{User: user}, target, op, payload)
	if err != nil {
		return nil, fmt.Errorf("call %s.%s: %w", target, op, err)
	}
	return out, nil
}
