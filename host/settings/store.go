// Package settings stores module settings in PostgreSQL and overlays them with a
// YAML config file. The effective value of a setting is its manifest default, then
// the database, then the file; a key set by the file is locked. Secrets are stored
// only as argon2id hashes (package sdk/secret) and never returned in plain text.
//
// Every change bumps the module's revision and is announced to subscribers — those
// of this process at once, those of other replicas sharing the database through
// LISTEN/NOTIFY. See docs/settings.md.
package settings

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/audit"
	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/sdk/secret"
)

// notifyChannel is the LISTEN/NOTIFY channel announcing changed modules; the payload
// is a notice.
const notifyChannel = "fiberkit_settings"

// listenerName is the application_name of the store's LISTEN connection.
const listenerName = "fiberkit settings listener"

// notice is the payload of a notification: which module changed, and which Store
// changed it (so that Store, which told its subscribers already, skips it).
type notice struct {
	Module string `json:"module"`
	Origin string `json:"origin"`
}

// lockedProblem is the field message for a key the config file sets.
const lockedProblem = "set by the config file; change it there"

// ErrLocked is matched (errors.Is) by errors refusing to change a key the config file sets.
var ErrLocked = errors.New("set by the config file")

// ErrUnknownModule is returned for a module the store has no schema for.
var ErrUnknownModule = errors.New("unknown module")

// ValidationError lists the problem with each refused field.
type ValidationError struct {
	Module string
	Fields map[string]string // key → problem
	Locked []string          // keys refused because the config file sets them
}

// Error implements error.
func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Fields[k]
	}
	return fmt.Sprintf("settings of %s not saved: %s", e.Module, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrLocked) true when a locked key was refused.
func (e *ValidationError) Is(target error) bool { return target == ErrLocked && len(e.Locked) > 0 }

// Value is one setting's effective value.
type Value struct {
	Setting manifest.Setting
	// Value is the effective value; for a secret, its hash or "".
	Value string
	IsSet bool
	// Locked is true when the config file sets it.
	Locked bool
}

// Snapshot is a module's effective settings at one revision.
type Snapshot struct {
	Module   string
	Revision int64
	Values   []Value // in schema order
}

// Get returns the value of key.
func (s Snapshot) Get(key string) (Value, bool) {
	for _, v := range s.Values {
		if v.Setting.Key == key {
			return v, true
		}
	}
	return Value{}, false
}

// Enabled reports the module's enabled flag.
func (s Snapshot) Enabled() bool {
	v, _ := s.Get("enabled")
	return v.Value == "true"
}

// Map returns key → value, secrets as their hash: what the host sends the module.
func (s Snapshot) Map() map[string]string {
	m := make(map[string]string, len(s.Values))
	for _, v := range s.Values {
		m[v.Setting.Key] = v.Value
	}
	return m
}

// fileValue is a config-file value, secrets already hashed.
type fileValue struct {
	value       string
	fingerprint [32]byte // sha256 of the plain value, to tell a changed secret from a re-hash
}

// Store is the settings store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	origin string // this Store's id in notifications

	mu      sync.RWMutex
	schemas map[string]*manifest.Manifest
	file    map[string]map[string]fileValue // module → key → value
	fileGen map[string]int64
	subs    map[int]func(module string)
	nextSub int

	applyMu sync.Mutex // serialises ApplyFile, which hashes secrets outside mu

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Open migrates the host's tables (see migrations) and starts listening for other
// replicas' changes on a dedicated connection (not one of pool's), which it
// re-establishes when lost. The pool stays the caller's.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate(ctx, pool); err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand panics rather than return an error)
	s := &Store{pool: pool, origin: hex.EncodeToString(id[:]), schemas: map[string]*manifest.Manifest{},
		file: map[string]map[string]fileValue{}, fileGen: map[string]int64{}, subs: map[int]func(string){}}
	// Listen before returning, so no change made after Open can be missed.
	conn, err := s.connectListener(ctx)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.listen(lctx, conn)
	}()
	return s, nil
}

// Close stops listening and waits for the listener to end. The pool stays open; it
// belongs to the caller. Close may be called more than once.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// Register adds (or replaces) a module's schema, which Set validates against and
// Snapshot orders and defaults by. Register every module before applying a config
// file: ApplyFile ignores modules it does not know, CheckFile refuses them.
func (s *Store) Register(m *manifest.Manifest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schemas[m.ID] = m
}

// Subscribe calls fn with a module's id after any change of its settings: a Set or
// ClearSecret on this Store, a config file applied with ApplyFile, or a change made
// by another Store on the same database (another replica). fn may also be called
// when nothing changed — after the listener reconnects, for every module, since
// notifications sent meanwhile are lost — so it should re-read with Snapshot and
// compare revisions. fn runs on the changing goroutine or the listener's: it must not
// block for long. The returned function removes the subscription.
func (s *Store) Subscribe(fn func(module string)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// announce tells this process's subscribers that modules changed.
func (s *Store) announce(modules ...string) {
	s.mu.RLock()
	fns := make([]func(string), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.RUnlock()
	for _, m := range modules {
		for _, fn := range fns {
			fn(m)
		}
	}
}

func (s *Store) schema(module string) (*manifest.Manifest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.schemas[module]
	if !ok {
		return nil, fmt.Errorf("settings: %w %q", ErrUnknownModule, module)
	}
	return m, nil
}

// Snapshot returns a module's effective settings.
func (s *Store) Snapshot(ctx context.Context, module string) (Snapshot, error) {
	m, err := s.schema(module)
	if err != nil {
		return Snapshot{}, err
	}
	// One statement, so values and revision come from one database snapshot.
	var dbRev int64
	db := map[string]string{}
	err = s.pool.QueryRow(ctx, `SELECT
		coalesce((SELECT revision FROM fiberkit_settings_revisions WHERE module = $1), 0),
		coalesce((SELECT jsonb_object_agg(key, value) FROM fiberkit_settings WHERE module = $1), '{}')`,
		module).Scan(&dbRev, &db)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read settings of %s: %w", module, err)
	}
	s.mu.RLock()
	file := s.file[module]
	// Both parts only grow, so their sum does too.
	snap := Snapshot{Module: module, Revision: dbRev + s.fileGen[module]}
	s.mu.RUnlock()
	for _, st := range m.Settings {
		v := Value{Setting: st, Value: st.Default}
		if dv, ok := db[st.Key]; ok {
			v.Value = dv
		}
		if fv, ok := file[st.Key]; ok {
			v.Value, v.Locked = fv.value, true
		}
		v.IsSet = v.Value != ""
		snap.Values = append(snap.Values, v)
	}
	return snap, nil
}

// Set changes some of a module's settings, all or none, on behalf of actor. Values are
// normalised for their type (manifest.Setting.Normalize). Secrets are given in plain
// text and stored hashed; an empty secret clears it (as ClearSecret; the admin form
// leaves an untouched secret out of changes). Refused fields are
// reported together in a *ValidationError (errors.Is(err, ErrLocked) when the config
// file sets one). A successful Set bumps the module's revision and writes an audit
// entry in the same transaction, then notifies subscribers here and on other replicas.
func (s *Store) Set(ctx context.Context, module string, changes map[string]string, actor string) error {
	m, err := s.schema(module)
	if err != nil {
		return err
	}
	s.mu.RLock()
	file := s.file[module]
	s.mu.RUnlock()
	verr := &ValidationError{Module: module, Fields: map[string]string{}}
	store := map[string]string{}
	var clear []string
	detail := map[string]any{}
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		raw := changes[key]
		st, ok := m.Setting(key)
		if !ok {
			verr.Fields[key] = "no such setting"
			continue
		}
		if _, locked := file[key]; locked {
			verr.Fields[key] = lockedProblem
			verr.Locked = append(verr.Locked, key)
			continue
		}
		if st.Type == manifest.Secret {
			if raw == "" {
				clear = append(clear, key)
				detail[key] = "cleared"
				continue
			}
			h, err := secret.Hash(raw)
			if err != nil {
				return fmt.Errorf("settings of %s: %w", module, err)
			}
			store[key] = h
			detail[key] = "changed"
			continue
		}
		norm, err := st.Normalize(raw)
		if err != nil {
			verr.Fields[key] = strings.TrimPrefix(err.Error(), manifest.ErrInvalidValue.Error()+": ")
			continue
		}
		store[key] = norm
		detail[key] = norm
	}
	if len(verr.Fields) > 0 {
		return verr
	}
	if len(store) == 0 && len(clear) == 0 {
		return nil
	}
	err = s.write(ctx, module, actor, "settings.set", detail, func(tx pgx.Tx) error {
		for _, k := range clear {
			if _, err := tx.Exec(ctx, `DELETE FROM fiberkit_settings WHERE module = $1 AND key = $2`, module, k); err != nil {
				return err
			}
		}
		for k, v := range store {
			if _, err := tx.Exec(ctx, `INSERT INTO fiberkit_settings (module, key, value, updated_by) VALUES ($1, $2, $3, $4)
				ON CONFLICT (module, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by`,
				module, k, v, actor); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save settings of %s: %w", module, err)
	}
	return nil
}

// ClearSecret removes a secret's stored hash on behalf of actor (audited, revision
// bumped, subscribers notified). A secret the config file sets is refused (ErrLocked).
func (s *Store) ClearSecret(ctx context.Context, module, key, actor string) error {
	m, err := s.schema(module)
	if err != nil {
		return err
	}
	st, ok := m.Setting(key)
	if !ok || st.Type != manifest.Secret {
		return &ValidationError{Module: module, Fields: map[string]string{key: "not a secret setting"}}
	}
	s.mu.RLock()
	_, locked := s.file[module][key]
	s.mu.RUnlock()
	if locked {
		return &ValidationError{Module: module, Fields: map[string]string{key: lockedProblem}, Locked: []string{key}}
	}
	err = s.write(ctx, module, actor, "settings.clear", map[string]any{key: "cleared"}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM fiberkit_settings WHERE module = $1 AND key = $2`, module, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear %s of %s: %w", key, module, err)
	}
	return nil
}

// write runs change in a transaction that also bumps the revision, writes the audit
// entry and notifies other replicas, then tells this process's subscribers.
func (s *Store) write(ctx context.Context, module, actor, action string, detail map[string]any, change func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO fiberkit_settings_revisions (module, revision) VALUES ($1, 1)
			ON CONFLICT (module) DO UPDATE SET revision = fiberkit_settings_revisions.revision + 1`, module); err != nil {
			return err
		}
		if err := audit.New(tx).Log(ctx, actor, module, action, detail); err != nil {
			return err
		}
		payload, err := json.Marshal(notice{Module: module, Origin: s.origin})
		if err != nil {
			return err
		}
		// Delivered at commit, to every listening Store but this one (see relay).
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
		return err
	})
	if err != nil {
		return err
	}
	s.announce(module)
	return nil
}

// connectListener opens the dedicated connection that LISTENs for changes. It uses
// the pool's connection settings; the pool's BeforeConnect/AfterConnect hooks do not
// apply to it.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("settings: connect listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("settings: listen: %w", err)
	}
	return conn, nil
}

// listen relays other replicas' changes to subscribers until ctx ends, reconnecting
// with backoff when the connection is lost.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	for {
		s.relay(ctx, conn)
		closeConn(conn)
		backoff := 100 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if conn, err = s.connectListener(ctx); err == nil {
				break
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		// Whatever was notified while disconnected is lost: have everyone re-read.
		s.mu.RLock()
		ids := make([]string, 0, len(s.schemas))
		for id := range s.schemas {
			ids = append(ids, id)
		}
		s.mu.RUnlock()
		sort.Strings(ids)
		s.announce(ids...)
	}
}

// relay announces notifications arriving on conn until it fails or ctx ends.
func (s *Store) relay(ctx context.Context, conn *pgx.Conn) {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		var nt notice
		if json.Unmarshal([]byte(n.Payload), &nt) != nil || nt.Module == "" {
			continue
		}
		if nt.Origin != s.origin { // this Store's own changes were announced when made
			s.announce(nt.Module)
		}
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// CheckFile validates a config file against the registered schemas without applying it.
func (s *Store) CheckFile(f *File) error {
	_, err := s.resolveFile(f)
	return err
}

func (s *Store) resolveFile(f *File) (map[string]map[string]fileValue, error) {
	out := map[string]map[string]fileValue{}
	var problems []string
	ids := f.ModuleIDs()
	for _, id := range ids {
		fm := f.Modules[id]
		m, err := s.schema(id)
		if err != nil {
			problems = append(problems, fmt.Sprintf("modules.%s: unknown module", id))
			continue
		}
		vals := map[string]fileValue{}
		entries := map[string]string{}
		for k, v := range fm.Settings {
			entries[k] = v
		}
		if fm.Enabled != nil {
			entries["enabled"] = *fm.Enabled
		}
		for k, v := range entries {
			st, ok := m.Setting(k)
			if !ok {
				problems = append(problems, fmt.Sprintf("modules.%s.settings.%s: no such setting", id, k))
				continue
			}
			fp := sha256.Sum256([]byte(v))
			if st.Type == manifest.Secret {
				vals[k] = fileValue{fingerprint: fp} // hashed in ApplyFile, only when changed
				continue
			}
			norm, err := st.Normalize(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("modules.%s.settings.%s: %v", id, k, err))
				continue
			}
			vals[k] = fileValue{value: norm, fingerprint: fp}
		}
		out[id] = vals
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("config file %s: %s", f.Path, strings.Join(problems, "; "))
	}
	return out, nil
}

// ApplyFile installs f as the config-file overlay, replacing the previous one, and
// returns the ids of the modules whose file values changed (sorted); their
// subscribers are told too. Secrets in the file are hashed here, in memory only (a
// value that already is a secret.Hash output is taken as the hash); an unchanged
// secret keeps its hash. A file that fails CheckFile changes nothing and returns nil:
// check it first to report why. Modules not registered yet are ignored.
func (s *Store) ApplyFile(f *File) (changed []string) {
	resolved, err := s.resolveFile(f)
	if err != nil {
		return nil
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	schemas := make(map[string]*manifest.Manifest, len(s.schemas))
	for id, m := range s.schemas {
		schemas[id] = m
	}
	old := s.file
	s.mu.RUnlock()

	next := make(map[string]map[string]fileValue, len(old))
	for id, vals := range old {
		next[id] = vals
	}
	for id, m := range schemas {
		was, now := old[id], resolved[id]
		same := len(was) == len(now)
		for k, v := range now {
			if o, ok := was[k]; !ok || o.fingerprint != v.fingerprint {
				same = false
			}
		}
		if same {
			continue
		}
		// Hash secrets now (slow: outside mu), keeping the hash of an unchanged one.
		for k, v := range now {
			if st, _ := m.Setting(k); st.Type != manifest.Secret {
				continue
			}
			if o, ok := was[k]; ok && o.fingerprint == v.fingerprint {
				now[k] = o
				continue
			}
			plain := f.Modules[id].Settings[k]
			switch {
			case plain == "", secret.IsHash(plain):
				now[k] = fileValue{value: plain, fingerprint: v.fingerprint}
			default:
				h, err := secret.Hash(plain)
				if err != nil {
					return nil // no randomness: leave the old overlay in force
				}
				now[k] = fileValue{value: h, fingerprint: v.fingerprint}
			}
		}
		if len(now) == 0 {
			delete(next, id)
		} else {
			next[id] = now
		}
		changed = append(changed, id)
	}
	sort.Strings(changed)
	s.mu.Lock()
	s.file = next
	for _, id := range changed {
		s.fileGen[id]++
	}
	s.mu.Unlock()
	s.announce(changed...)
	return changed
}
