package host

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/host/settings"
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
	// LastCrash is when the module's process last died, hung or failed to start;
	// zero if it never did.
	LastCrash time.Time
	// PID of the plugin process while it runs.
	PID int
	// EnabledLocked is true when the config file sets the enabled flag.
	EnabledLocked bool
}

// module supervises one plugin process: it starts it when the module is enabled,
// stops it when disabled, configures it on every settings change, and restarts it with
// backoff when it dies or stops answering. One goroutine (run) owns the process;
// others only poke it. The enabled flag is kept apart from that goroutine (watch,
// Kit.SetEnabled), so turning a module off takes effect at once even while its
// supervisor waits on a slow or hung plugin.
type module struct {
	kit      *Kit
	man      *manifest.Manifest
	wake     chan struct{} // to run: re-read the settings
	flagWake chan struct{} // to watch: re-read the enabled flag
	sock     *sockets
	metrics  *moduleMetrics

	mu         sync.Mutex
	state      State
	enabled    bool
	enabledRev int64 // settings revision m.enabled comes from; older snapshots are ignored
	locked     bool
	restarts   int
	lastErr    string
	lastCrash  time.Time
	pid        int
	ops        map[string]bool // operations the running process described
	rpc        *transport.Client
	cur        *proc              // the live process, for Kit.Close's last resort
	abort      context.CancelFunc // cancels run's start or configure in progress, nil if none
	settled    chan struct{}      // closed once the first apply finished
}

func newModule(k *Kit, m *manifest.Manifest) *module {
	mod := &module{kit: k, man: m, wake: make(chan struct{}, 1), flagWake: make(chan struct{}, 1),
		state: StateDisabled, settled: make(chan struct{}), sock: newSockets()}
	mod.metrics = k.metrics.forModule(mod)
	return mod
}

// poke asks run to re-read the settings (and watch the enabled flag).
func (m *module) poke() {
	for _, ch := range []chan struct{}{m.wake, m.flagWake} {
		select {
		case ch <- struct{}{}:
		default:
		}
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
		Restarts: m.restarts, LastError: m.lastErr, LastCrash: m.lastCrash, PID: m.pid, EnabledLocked: m.locked}
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

// noteEnabled takes the enabled flag from snap unless a newer revision set it
// already. Turning the module off also cancels a start or configure in progress.
func (m *module) noteEnabled(snap settings.Snapshot) {
	v, _ := snap.Get("enabled")
	m.mu.Lock()
	defer m.mu.Unlock()
	if snap.Revision < m.enabledRev {
		return
	}
	m.enabled, m.locked, m.enabledRev = snap.Enabled(), v.Locked, snap.Revision
	if !m.enabled && m.abort != nil {
		m.abort()
	}
}

// refreshEnabled re-reads the enabled flag.
func (m *module) refreshEnabled(ctx context.Context) error {
	snap, err := m.kit.settings.Snapshot(ctx, m.man.ID)
	if err != nil {
		return err
	}
	m.noteEnabled(snap)
	return nil
}

// watch keeps the enabled flag current, independently of run.
func (m *module) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.flagWake:
			if err := m.refreshEnabled(ctx); err != nil && ctx.Err() == nil {
				m.kit.log.Error("read settings", "module", m.man.ID, "err", err)
			}
		}
	}
}

// healthTimeout is how long a plugin has to answer a health check before it is
// treated as hung: killed and restarted.
const healthTimeout = 2 * time.Second

// killGrace is how long a plugin has to exit when asked to (go-plugin itself waits 2 s
// after the shutdown request) before it is killed outright.
const killGrace = 3 * time.Second

// closeWait bounds how long Kit.Close waits for the supervisors before it kills
// their processes outright.
const closeWait = 10 * time.Second

// proc is one running plugin process.
type proc struct {
	client *plugin.Client
	proto  plugin.ClientProtocol
	rpc    *transport.Client
	hostID uint32
	// hardKill SIGKILLs the process (it was started with exec.CommandContext).
	hardKill context.CancelFunc
}

// kill stops the process through go-plugin (a shutdown request, then a kill); a
// process that does not answer within killGrace — stopped, or wedged — is killed
// outright. kill waits at most about 2×killGrace.
func (p *proc) kill() {
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
		p.hardKill()
		select {
		case <-done:
		case <-time.After(killGrace):
			// go-plugin finishes its cleanup in the background.
		}
	}
	p.hardKill()
}

// killNow kills a process known to be dead or hung without asking it first.
func (p *proc) killNow() {
	p.hardKill()
	p.kill()
}

// health reports whether the process is alive and answers go-plugin's gRPC health
// service within healthTimeout.
func (p *proc) health(ctx context.Context) error {
	if p.client.Exited() {
		return errors.New("plugin process exited unexpectedly")
	}
	gc, ok := p.proto.(*plugin.GRPCClient)
	if !ok {
		return errors.New("plugin does not speak gRPC")
	}
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	_, err := grpc_health_v1.NewHealthClient(gc.Conn).Check(hctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	switch {
	case err == nil:
		return nil
	case p.client.Exited():
		return errors.New("plugin process exited unexpectedly")
	case hctx.Err() != nil && ctx.Err() == nil:
		return fmt.Errorf("plugin did not answer the health check within %s (hung?); killed", healthTimeout)
	}
	return fmt.Errorf("plugin health check failed: %w", err)
}

// run is the module's supervisor loop.
func (m *module) run(ctx context.Context) {
	var watchers sync.WaitGroup
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		m.watch(ctx)
	}()
	defer watchers.Wait()
	var p *proc
	defer func() {
		if p != nil {
			m.stop(p, "host shutting down")
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
	crashed := func(errText string) {
		m.setState(StateCrashed, errText)
		m.mu.Lock()
		m.lastCrash = time.Now()
		m.mu.Unlock()
		retry = time.After(backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
	apply := func() {
		defer markSettled()
		snap, err := m.kit.settings.Snapshot(ctx, m.man.ID)
		if err != nil {
			if ctx.Err() == nil {
				m.kit.log.Error("read settings", "module", m.man.ID, "err", err)
			}
			return
		}
		m.noteEnabled(snap)
		// Starting and configuring may take long; turning the module off (noteEnabled)
		// cancels them, and so does Close.
		opCtx, opCancel := context.WithCancel(ctx)
		defer opCancel()
		m.mu.Lock()
		enabled := m.enabled
		if enabled {
			m.abort = opCancel
		}
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			m.abort = nil
			m.mu.Unlock()
		}()
		aborted := func() bool {
			if opCtx.Err() == nil || ctx.Err() != nil {
				return false
			}
			// Turned off meanwhile: the pending wake-up stops the module.
			m.poke()
			return true
		}
		if !enabled {
			if p != nil {
				m.stop(p, "module disabled")
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
			np, err := m.start(opCtx)
			if err != nil {
				if aborted() || ctx.Err() != nil {
					return
				}
				m.kit.log.Error("start module", "module", m.man.ID, "err", err)
				crashed(err.Error())
				return
			}
			p, lastRev = np, -1
		}
		if snap.Revision != lastRev {
			cctx, cancel := context.WithTimeout(opCtx, 30*time.Second)
			err := p.rpc.Configure(cctx, m.configuration(snap.Revision, snap.Map()), p.hostID)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return // the deferred stop ends the process
				}
				if aborted() {
					m.stop(p, "module disabled")
					p = nil
					return
				}
				m.kit.log.Error("configure module", "module", m.man.ID, "err", err)
				m.stop(p, "module restarting")
				p = nil
				crashed("configure: " + err.Error())
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
			err := p.health(ctx)
			if err == nil || ctx.Err() != nil {
				continue
			}
			m.kit.log.Warn("plugin process died or hung; restarting", "module", m.man.ID, "err", err)
			m.mu.Lock()
			m.state, m.rpc, m.pid = StateRestarting, nil, 0
			m.restarts++
			m.lastErr = err.Error()
			m.lastCrash = time.Now()
			m.mu.Unlock()
			m.sock.closeAll(1011, "module restarting")
			p.killNow()
			m.forget(p)
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

// stop ends p, closing the module's WebSockets with reason.
func (m *module) stop(p *proc, reason string) {
	m.mu.Lock()
	m.rpc, m.pid = nil, 0
	m.mu.Unlock()
	m.sock.closeAll(1001, reason)
	p.kill()
	m.forget(p)
}

// forget drops p as the live process.
func (m *module) forget(p *proc) {
	m.mu.Lock()
	if m.cur == p {
		m.cur = nil
	}
	m.mu.Unlock()
}

// killCurrent kills the live process outright; Kit.Close's last resort when the
// supervisor does not finish.
func (m *module) killCurrent() {
	m.mu.Lock()
	p := m.cur
	m.mu.Unlock()
	if p != nil {
		p.hardKill()
	}
}

func (m *module) configuration(rev int64, values map[string]string) transport.Configuration {
	return transport.Configuration{
		ModuleID: m.man.ID, Revision: rev, Settings: values, DatabaseURL: m.kit.cfg.DatabaseURL,
		HostVersion: Version, PublicURL: m.kit.cfg.PublicURL,
		MountPrefix: m.kit.cfg.Prefix + "/" + m.man.ID, AdminPrefix: m.kit.cfg.AdminPrefix + "/" + m.man.ID,
	}
}

// start launches the plugin process and completes the handshake. Cancelling ctx kills
// the process being started.
func (m *module) start(ctx context.Context) (*proc, error) {
	procCtx, hardKill := context.WithCancel(context.Background())
	cmd := exec.CommandContext(procCtx, m.man.Executable)
	cmd.Dir = m.man.Dir
	cmd.Env = m.kit.pluginEnv()
	dieWithHost(cmd)
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
	fail := func(err error) (*proc, error) {
		hardKill()
		client.Kill()
		return nil, err
	}
	stopWatch := context.AfterFunc(ctx, hardKill)
	defer stopWatch()
	proto, err := startLocked(procCtx.Done(), client.Client)
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", m.man.Executable, err))
	}
	raw, err := proto.Dispense(transport.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	rpc, ok := raw.(*transport.Client)
	if !ok {
		return fail(errors.New("dispense: unexpected plugin type"))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	desc, err := rpc.Describe(dctx)
	if err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if desc.ID != "" && desc.ID != m.man.ID {
		return fail(fmt.Errorf("plugin says it is %q but its manifest %s says %q", desc.ID, m.man.File, m.man.ID))
	}
	if !stopWatch() {
		return fail(ctx.Err())
	}
	hostID := rpc.ServeHost(&hostService{kit: m.kit, mod: m}, m.kit.maxMessage())
	p := &proc{client: client, proto: proto, rpc: rpc, hostID: hostID, hardKill: hardKill}
	m.mu.Lock()
	if rc := client.ReattachConfig(); rc != nil {
		m.pid = rc.Pid
	}
	m.cur = p
	m.ops = make(map[string]bool, len(desc.Operations))
	for _, op := range desc.Operations {
		m.ops[op] = true
	}
	m.mu.Unlock()
	return p, nil
}

// startLocked runs start, which forks the plugin process, on a goroutine locked to
// its OS thread, and keeps that thread locked until done is closed (the process is
// being killed). The parent-death signal (dieWithHost) belongs to the forking
// thread, not to the host process: Go ends a thread when a goroutine locked to it
// returns without unlocking, and while ours holds it no other goroutine runs there.
// It costs one idle OS thread per plugin process.
func startLocked[T any](done <-chan struct{}, start func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		v, err := start()
		res <- result{v, err}
		<-done
	}()
	r := <-res
	return r.v, r.err
}
