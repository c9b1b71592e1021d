package host

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"

	"github.com/hashicorp/go-hclog"
)

// newPluginLogger returns the hclog.Logger go-plugin needs, writing into the kit's
// slog.Logger under the module's id. go-plugin re-emits each JSON line a plugin
// writes to stderr through it.
func newPluginLogger(log *slog.Logger, id string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       id,
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     &slogWriter{log: log.With("module", id)},
	})
}

// slogWriter turns hclog's JSON lines back into slog records.
type slogWriter struct {
	log *slog.Logger
}

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			w.log.Info(string(line))
			continue
		}
		msg, _ := rec["@message"].(string)
		lvl := slog.LevelInfo
		switch rec["@level"] {
		case "trace", "debug":
			lvl = slog.LevelDebug
		case "warn":
			lvl = slog.LevelWarn
		case "error":
			lvl = slog.LevelError
		}
		keys := make([]string, 0, len(rec))
		for k := range rec {
			if k != "@message" && k != "@level" && k != "@timestamp" && k != "@module" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		attrs := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			attrs = append(attrs, k, rec[k])
		}
		w.log.Log(context.Background(), lvl, msg, attrs...)
	}
	return len(p), nil
}
