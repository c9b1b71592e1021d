package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fiberkit/fiberkit/host/settings"
	"github.com/fiberkit/fiberkit/sdk/transport"
)

// The system operations every module has, answered by the host rather than the
// module (a disabled module has no process to answer): turn it on, turn it off, and
// whether it is on — PhoenixKit's enable_system, disable_system and enabled?.
const (
	OpEnableSystem  = "enable_system"
	OpDisableSystem = "disable_system"
	OpEnabled       = "enabled"
)

// systemCall answers a system operation on m for caller. Another module may turn m
// on or off only when m's manifest declares the operation and lists the module among
// its callers (toggling is never open to every module); whether m is on, any module
// may ask. The host app's own code may do all three. A config file that pins the
// module's enabled flag wins (ErrLocked).
func (k *Kit) systemCall(ctx context.Context, caller transport.Caller, m *module, op string) ([]byte, error) {
	if op == OpEnabled {
		return json.Marshal(m.status().Enabled)
	}
	if caller.Plugin != "" && (!m.man.Declares(op) || !m.man.MayCall(op, caller.Plugin)) {
		return nil, transport.Errorf(transport.CodeForbidden, "module %s may not call %s.%s (the module's manifest lists who may)", caller.Plugin, m.man.ID, op)
	}
	actor := "admin:" + caller.User
	if caller.Plugin != "" {
		actor = "plugin:" + caller.Plugin
	}
	on := op == OpEnableSystem
	if err := k.SetEnabled(ctx, m.man.ID, on, actor); err != nil {
		if errors.Is(err, settings.ErrLocked) {
			return nil, transport.Errorf(transport.CodeLocked, "%s.%s: %v", m.man.ID, op, err)
		}
		return nil, fmt.Errorf("%s.%s: %w", m.man.ID, op, err)
	}
	return json.Marshal(on)
}
