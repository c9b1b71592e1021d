package host

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/sdk/transport"
)

// State is a module's lifecycle state as the admin page shows it.
type State string

// The module states.
const (
	StateDisabled   State = "disabled"
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateCrashed    State = "crashed"
)

// ModuleStatus is a snapshot of one module's state.
type ModuleStatus struct {
	ID       string
	Name     string
	Version  string
	State    State
	Enabled  bool
	Restarts int
	// LastError says why the module last failed to start or died.
	LastError string
	// PID of the plugin process while it runs.
	PID int
	// EnabledLocked is true when the config file sets the enabled flag.
	EnabledLocked bool
}

// module supervises one plugin process: it starts it when the module is enabled,
// stops it when disabled, configures it on every settings change, and restarts it with
// backoff when it dies. One goroutine (run) owns the process; others only poke it.
type module struct {
	kit  *Kit
	man  *manifest.Manifest
	wake chan struct{}
	sock *sockets

	mu       sync.Mutex
	state    State
	enabled  bool
	locked   bool
	restarts int
	lastErr  string
	pid      int
	rpc      *transport.Client
	settled  chan struct{} // closed once the first apply finished
}

func newModule(k *Kit, m *manifest.Manifest) *module {
	return &module{kit: k, man: m, wake: make(chan struct{}, 1), state: StateDisabled, settled: make(chan struct{}), sock: newSockets()}
}

// poke asks run to re-read the settings.
func (m *module) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *module) waitSettled(ctx context.Context) {
	select {
	case <-m.settled:
	case <-ctx.Done():
	}
}

func (m *module) status() ModuleStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return ModuleStatus{ID: m.man.ID, Name: m.man.Name, Version: m.man.Version, State: m.state, Enabled: m.enabled,
		Restarts: m.restarts, LastError: m.lastErr, PID: m.pid, EnabledLocked: m.locked}
}

// client returns the running plugin, or an error saying why there is none.
func (m *module) client() (*transport.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.enabled {
		return nil, transport.Errorf(transport.CodeModuleDisabled, "module %q is disabled", m.man.ID)
	}
	if m.rpc == nil || m.state != StateRunning {
		return nil, transport.Errorf(transport.CodeModuleDown, "module %q is %s", m.man.ID, m.state)
	}
	return m.rpc, nil
}

func (m *module) setState(s State, errText string) {
	m.mu.Lock()
	m.state = s
	if errText != "" {
		m.lastErr = errText
	}
	m.mu.Unlock()
}

// proc is one running plugin process.
type proc struct {
	client *plugin.Client
	proto  plugin.ClientProtocol
	rpc    *transport.Client
	hostID uint32
}

func (p *proc) kill() { p.client.Kill() }

// run is the module's supervisor loop.
func (m *module) run(ctx context.Context) {
	var p *proc
	defer func() {
		if p != nil {
			p.kill()
		}
		m.sock.closeAll(1001, "host shutting down")
	}()
	backoff := 200 * time.Millisecond
	var lastRev int64 = -1
	health := time.NewTicker(m.kit.cfg.HealthInterval)
	defer health.Stop()
	var retry <-chan time.Time
	markSettled := func() {
		select {
		case <-m.settled:
		default:
			close(m.settled)
		}
	}
	apply := func() {
		defer markSettled()
		snap, err := m.kit.settings.Snapshot(ctx, m.man.ID)
		if err != nil {
			m.kit.log.Error("read settings", "module", m.man.ID, "err", err)
			return
		}
		enabled := snap.Enabled()
		v, _ := snap.Get("enabled")
		m.mu.Lock()
		m.enabled, m.locked = enabled, v.Locked
		m.mu.Unlock()
		if !enabled {
			if p != nil {
				m.stop(p)
				p = nil
			}
			retry = nil
			m.setState(StateDisabled, "")
			lastRev = -1
			return
		}
		if p == nil {
			if m.status().State != StateRestarting {
				m.setState(StateStarting, "")
			}
			np, err := m.start(ctx)
			if err != nil {
				m.kit.log.Error("start module", "module", m.man.ID, "err", err)
				m.setState(StateCrashed, err.Error())
				retry = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
				return
			}
			p, lastRev = np, -1
		}
		if snap.Revision != lastRev {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := p.rpc.Configure(cctx, m.configuration(snap.Revision, snap.Map()), p.hostID)
			cancel()
			if err != nil {
				m.kit.log.Error("configure module", "module", m.man.ID, "err", err)
				m.setState(StateCrashed, "configure: "+err.Error())
				m.stop(p)
				p = nil
				retry = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
				return
			}
			lastRev = snap.Revision
		}
		m.mu.Lock()
		m.state, m.rpc = StateRunning, p.rpc
		m.mu.Unlock()
	}
	apply()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
			apply()
		case <-retry:
			retry = nil
			apply()
		case <-health.C:
			if p == nil {
				continue
			}
			if p.client.Exited() || p.proto.Ping() != nil {
				m.kit.log.Warn("plugin process died; restarting", "module", m.man.ID)
				m.mu.Lock()
				m.state, m.rpc, m.pid = StateRestarting, nil, 0
				m.restarts++
				m.lastErr = "plugin process exited unexpectedly"
				m.mu.Unlock()
				m.sock.closeAll(1011, "module restarting")
				p.kill()
				p = nil
				if time.Since(started) > time.Minute {
					backoff = 200 * time.Millisecond
				}
				retry = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
				started = time.Now()
			}
		}
	}
}

func (m *module) stop(p *proc) {
	m.mu.Lock()
	m.rpc, m.pid = nil, 0
	m.mu.Unlock()
	m.sock.closeAll(1001, "module disabled")
	p.kill()
}

func (m *module) configuration(rev int64, values map[string]string) transport.Configuration {
	return transport.Configuration{
		ModuleID: m.man.ID, Revision: rev, Settings: values, DatabaseURL: m.kit.cfg.DatabaseURL,
		HostVersion: Version, PublicURL: m.kit.cfg.PublicURL,
		MountPrefix: m.kit.cfg.Prefix + "/" + m.man.ID, AdminPrefix: m.kit.cfg.AdminPrefix + "/" + m.man.ID,
	}
}

// start launches the plugin process and completes the handshake.
func (m *module) start(ctx context.Context) (*proc, error) {
	cmd := exec.Command(m.man.Executable)
	cmd.Dir = m.man.Dir
	cmd.Env = m.kit.pluginEnv()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  transport.Handshake(),
		VersionedPlugins: transport.ClientPlugins(),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           newPluginLogger(m.kit.log, m.man.ID),
		StartTimeout:     30 * time.Second,
		GRPCDialOptions:  transport.DialOptions(m.kit.maxMessage()),
	})
	proto, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start %s: %w", m.man.Executable, err)
	}
	raw, err := proto.Dispense(transport.PluginName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("dispense: %w", err)
	}
	rpc, ok := raw.(*transport.Client)
	if !ok {
		client.Kill()
		return nil, errors.New("dispense: unexpected plugin type")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	desc, err := rpc.Describe(dctx)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("describe: %w", err)
	}
	if desc.ID != "" && desc.ID != m.man.ID {
		client.Kill()
		return nil, fmt.Errorf("plugin says it is %q but its manifest %s says %q", desc.ID, m.man.File, m.man.ID)
	}
	hostID := rpc.ServeHost(&hostService{kit: m.kit, mod: m}, m.kit.maxMessage())
	m.mu.Lock()
	if rc := client.ReattachConfig(); rc != nil {
		m.pid = rc.Pid
	}
	m.mu.Unlock()
	return &proc{client: client, proto: proto, rpc: rpc, hostID: hostID}, nil
}
