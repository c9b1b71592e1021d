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
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/sdk/secret"
)

// notifyChannel is the LISTEN/NOTIFY channel announcing changed modules.
const notifyChannel = "fiberkit_settings"

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
	pool *pgxpool.Pool

	mu      sync.RWMutex
	schemas map[string]*manifest.Manifest
	file    map[string]map[string]fileValue // module → key → value
	fileGen map[string]int64
	subs    map[int]func(module string)
	nextSub int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open migrates the store's tables and starts listening for other replicas' changes.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate(ctx, pool); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &Store{pool: pool, schemas: map[string]*manifest.Manifest{}, file: map[string]map[string]fileValue{},
		fileGen: map[string]int64{}, subs: map[int]func(string){}, cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.listen(lctx)
	}()
	return s, nil
}

// Close stops listening. The pool stays open; it belongs to the caller.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}

// Register adds a module's schema.
func (s *Store) Register(m *manifest.Manifest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schemas[m.ID] = m
}

// Subscribe calls fn with a module's id after any change of its settings. It returns
// a function that removes the subscription.
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

func (s *Store) announce(module string) {
	s.mu.RLock()
	fns := make([]func(string), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.RUnlock()
	for _, fn := range fns {
		fn(module)
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
	db := map[string]string{}
	var dbRev int64
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM fiberkit_settings WHERE module = $1`, module)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read settings of %s: %w", module, err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return Snapshot{}, fmt.Errorf("read settings of %s: %w", module, err)
		}
		db[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("read settings of %s: %w", module, err)
	}
	err = s.pool.QueryRow(ctx, `SELECT revision FROM fiberkit_settings_revisions WHERE module = $1`, module).Scan(&dbRev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Snapshot{}, fmt.Errorf("read revision of %s: %w", module, err)
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

// Set changes some of a module's settings, all or none. Secrets are given in plain
// text and stored hashed; an empty secret leaves it unchanged. Refused fields are
// reported in a *ValidationError (errors.Is(err, ErrLocked) when the file sets one).
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
			verr.Fields[key] = fmt.Sprintf("set by the config file; change it there (module %s, key %s)", module, key)
			verr.Locked = append(verr.Locked, key)
			continue
		}
		if st.Type == manifest.Secret {
			if raw == "" {
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
	if len(store) == 0 {
		return nil
	}
	err = s.write(ctx, module, actor, "settings.set", detail, func(tx pgx.Tx) error {
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

// ClearSecret removes a secret's stored hash.
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
		return &ValidationError{Module: module, Fields: map[string]string{key: "set by the config file"}, Locked: []string{key}}
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
		if _, err := tx.Exec(ctx, `INSERT INTO fiberkit_audit (actor, module, action, detail) VALUES ($1, $2, $3, $4)`,
			actor, module, action, detail); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, module)
		return err
	})
	if err != nil {
		return err
	}
	s.announce(module)
	return nil
}

// listen relays other replicas' changes to subscribers, reconnecting as needed.
func (s *Store) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := s.pool.Acquire(ctx)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+notifyChannel)
			if err == nil {
				backoff = 100 * time.Millisecond
				for {
					n, werr := conn.Conn().WaitForNotification(ctx)
					if werr != nil {
						err = werr
						break
					}
					s.announce(n.Payload)
				}
			}
			// A connection that was LISTENing must not go back to the pool.
			_ = conn.Conn().Close(context.Background())
			conn.Release()
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
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

// ApplyFile installs f as the overlay and returns the modules whose effective
// settings changed. An invalid file changes nothing (check it with CheckFile).
func (s *Store) ApplyFile(f *File) []string {
	resolved, err := s.resolveFile(f)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	for id := range s.schemas {
		old, nw := s.file[id], resolved[id]
		same := len(old) == len(nw)
		for k, v := range nw {
			if o, ok := old[k]; !ok || o.fingerprint != v.fingerprint {
				same = false
			}
		}
		if same {
			continue
		}
		// Hash secrets now, keeping the old hash of an unchanged secret.
		for k, v := range nw {
			st, _ := s.schemas[id].Setting(k)
			if st.Type != manifest.Secret {
				continue
			}
			if o, ok := old[k]; ok && o.fingerprint == v.fingerprint {
				nw[k] = o
				continue
			}
			plain := f.Modules[id].Settings[k]
			if plain == "" {
				continue
			}
			h, err := secret.Hash(plain)
			if err != nil {
				continue
			}
			nw[k] = fileValue{value: h, fingerprint: v.fingerprint}
		}
		if len(nw) == 0 {
			delete(s.file, id)
		} else {
			s.file[id] = nw
		}
		s.fileGen[id]++
		changed = append(changed, id)
	}
	sort.Strings(changed)
	return changed
}
