package host

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"

	"github.com/fiberkit/fiberkit/host/settings"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

const (
	bodyReadLocal = "fiberkit.bodyread"
	csrfLocal     = "fiberkit.csrf"
	csrfHeader    = "X-Csrf-Token"
	csrfField     = "_csrf"
	csrfCookie    = "fiberkit_csrf"
	// maxFormTokenBody is the largest urlencoded body in which the CSRF token is
	// looked for; larger bodies, multipart ones and bodies of unknown length must
	// carry it in the X-Csrf-Token header, so checking it never reads a body the kit
	// then has to hold in memory.
	maxFormTokenBody = 64 << 10
	// maxKitFormBody is the largest body the kit's own admin forms accept.
	maxKitFormBody = 1 << 20
)

// admin draws the kit's own admin pages: the module list and each module's settings.
type admin struct {
	kit    *Kit
	tmpl   *template.Template
	tokens *csrfStore // the CSRF tokens (checkCSRF)
}

func newAdmin(k *Kit) (*admin, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"lower": strings.ToLower,
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &admin{kit: k, tmpl: t, tokens: &csrfStore{pool: k.pool}}, nil
}

// csrfToken finds the CSRF token of an unsafe request: the X-Csrf-Token header or
// the _csrf field of a small urlencoded form — never the query string, which ends up
// in logs, history and Referer headers. It reads the body only in the form's case;
// any other body (a multipart upload, say) stays unread, so the proxy streams it to
// the module.
func csrfToken(c *fiber.Ctx) (string, error) {
	if t := c.Get(csrfHeader); t != "" {
		return t, nil
	}
	ct, _, _ := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	n := c.Request().Header.ContentLength()
	if ct != fiber.MIMEApplicationForm || n < 0 || n > maxFormTokenBody || c.Get(fiber.HeaderContentEncoding) != "" {
		return "", errTokenNotInHeader
	}
	// This reads the (small) body into memory: the proxy then forwards that copy,
	// since the stream has been consumed.
	c.Locals(bodyReadLocal, true)
	if t := string(c.Request().PostArgs().Peek(csrfField)); t != "" {
		return t, nil
	}
	return "", errTokenNotInHeader
}

// smallForm guards the kit's own form handlers, which read the whole body: a body
// larger than any admin form, or of unknown length, is refused unread.
func smallForm(c *fiber.Ctx) error {
	if n := c.Request().Header.ContentLength(); n < 0 || n > maxKitFormBody {
		discardBody(c)
		return c.Status(fiber.StatusRequestEntityTooLarge).SendString("request body too large for an admin form")
	}
	return c.Next()
}

// maxDiscard is how much of an unread request body is read and thrown away before a
// refusal, so that the client, still sending, can read the answer: closing a
// connection with unread data resets it, and the client then sees a reset instead
// of the 403. Larger bodies are cut off that way all the same.
const maxDiscard = 16 << 20

// discardBody reads what is left of a refused request's body, up to maxDiscard,
// without holding it; if there is more, the connection is closed after the answer.
func discardBody(c *fiber.Ctx) {
	s := c.Context().RequestBodyStream()
	if s == nil || c.Locals(bodyReadLocal) != nil {
		return
	}
	if n, _ := io.CopyN(io.Discard, s, maxDiscard+1); n > maxDiscard {
		c.Set(fiber.HeaderConnection, "close")
	}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func (a *admin) mount(app *fiber.App, guard []fiber.Handler) {
	p := a.kit.cfg.AdminPrefix
	chain := func(h fiber.Handler) []fiber.Handler {
		return append(append(append([]fiber.Handler{}, guard...), a.checkCSRF), h)
	}
	app.Use(p+"/assets", filesystem.New(filesystem.Config{Root: http.FS(staticFS), PathPrefix: "static"}))
	app.Get(p, chain(a.list)...)
	app.Get(p+"/", chain(a.list)...)
	app.Get(p+"/modules.json", chain(a.statusJSON)...)
	app.Get(p+"/modules/:id", chain(a.settingsPage)...)
	post := func(h fiber.Handler) []fiber.Handler {
		return append(append(append([]fiber.Handler{}, guard...), smallForm, a.checkCSRF), h)
	}
	app.Post(p+"/modules/:id", post(a.saveSettings)...)
	app.Post(p+"/modules/:id/toggle", post(a.toggle)...)
}

type pageData struct {
	Title   string
	Prefix  string
	CSRF    string
	User    string
	Flash   string
	Error   string
	Modules []ModuleStatus
	Module  ModuleStatus
	Fields  []field
}

type field struct {
	Key, Name, Type, Help, Value string
	Options                      []string
	Locked, Secret, IsSet        bool
	Checked                      bool
	Error                        string
}

func (a *admin) page(c *fiber.Ctx, name string, d pageData) error {
	d.Prefix = a.kit.cfg.AdminPrefix
	d.CSRF, _ = c.Locals(csrfLocal).(string)
	d.User, _ = c.Locals(UserLocal).(string)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Set("X-Frame-Options", "DENY")
	c.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
	return a.tmpl.ExecuteTemplate(c.Response().BodyWriter(), name, d)
}

func (a *admin) list(c *fiber.Ctx) error {
	return a.page(c, "modules.html", pageData{Title: "Modules", Modules: a.kit.Modules(), Flash: c.Query("flash")})
}

func (a *admin) statusJSON(c *fiber.Ctx) error {
	type row struct {
		ID       string `json:"id"`
		State    State  `json:"state"`
		Enabled  bool   `json:"enabled"`
		Restarts int    `json:"restarts"`
		Locked   bool   `json:"locked"`
		Error    string `json:"error,omitempty"`
	}
	var out []row
	for _, m := range a.kit.Modules() {
		out = append(out, row{ID: m.ID, State: m.State, Enabled: m.Enabled, Restarts: m.Restarts, Locked: m.EnabledLocked, Error: m.LastError})
	}
	return c.JSON(out)
}

func (a *admin) actor(c *fiber.Ctx) string {
	u, _ := c.Locals(UserLocal).(string)
	if u == "" {
		u = "admin"
	}
	return "admin:" + u
}

func (a *admin) toggle(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, ok := a.kit.modules[id]; !ok {
		return fiber.ErrNotFound
	}
	on := c.FormValue("enabled") == "true"
	err := a.kit.SetEnabled(c.UserContext(), id, on, a.actor(c))
	if err != nil {
		a.kit.log.Warn("toggle refused", "module", id, "err", err)
		return a.page(c.Status(fiber.StatusConflict), "modules.html", pageData{Title: "Modules", Modules: a.kit.Modules(), Error: err.Error()})
	}
	// Wait briefly for the process to start or stop so the page shows the result.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := a.kit.Module(id)
		if (on && st.State == StateRunning) || (!on && st.State == StateDisabled) || st.State == StateCrashed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c.Redirect(a.kit.cfg.AdminPrefix+"/", fiber.StatusSeeOther)
}

func (a *admin) fields(c *fiber.Ctx, id string, errs map[string]string, posted map[string]string) ([]field, error) {
	snap, err := a.kit.settings.Snapshot(c.UserContext(), id)
	if err != nil {
		return nil, err
	}
	var out []field
	for _, v := range snap.Values {
		s := v.Setting
		f := field{Key: s.Key, Name: s.Name, Type: string(s.Type), Help: s.Help, Options: s.Options, Locked: v.Locked,
			Secret: string(s.Type) == "secret", IsSet: v.IsSet, Error: errs[s.Key]}
		if f.Name == "" {
			f.Name = s.Key
		}
		if !f.Secret {
			f.Value = v.Value
			if pv, ok := posted[s.Key]; ok && !f.Locked {
				f.Value = pv
			}
		}
		f.Checked = f.Type == "bool" && f.Value == "true"
		out = append(out, f)
	}
	return out, nil
}

func (a *admin) settingsPage(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, ok := a.kit.modules[id]; !ok {
		return fiber.ErrNotFound
	}
	fs, err := a.fields(c, id, nil, nil)
	if err != nil {
		return err
	}
	st, _ := a.kit.Module(id)
	return a.page(c, "settings.html", pageData{Title: st.Name + " settings", Module: st, Fields: fs, Flash: c.Query("flash")})
}

func (a *admin) saveSettings(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, ok := a.kit.modules[id]; !ok {
		return fiber.ErrNotFound
	}
	snap, err := a.kit.settings.Snapshot(c.UserContext(), id)
	if err != nil {
		return err
	}
	changes := map[string]string{}
	var clear []string
	for _, v := range snap.Values {
		key := v.Setting.Key
		if v.Locked {
			// A locked field is rendered read-only; a value posted anyway is refused below.
			if posted := c.FormValue(key); posted != "" && posted != v.Value && string(v.Setting.Type) != "secret" {
				changes[key] = posted
			}
			continue
		}
		switch string(v.Setting.Type) {
		case "bool":
			changes[key] = boolString(c.FormValue(key) == "true")
		case "secret":
			if c.FormValue(key+".clear") == "true" {
				clear = append(clear, key)
			} else if pv := c.FormValue(key); pv != "" {
				changes[key] = pv
			}
		default:
			changes[key] = c.FormValue(key)
		}
	}
	ctx := c.UserContext()
	err = a.kit.settings.Set(ctx, id, changes, a.actor(c))
	if err == nil {
		for _, key := range clear {
			if err = a.kit.settings.ClearSecret(ctx, id, key, a.actor(c)); err != nil {
				break
			}
		}
	}
	if err != nil {
		errs := map[string]string{}
		var verr *settings.ValidationError
		msg := err.Error()
		if errors.As(err, &verr) {
			errs = verr.Fields
			msg = "Some settings were not saved: see the messages next to the fields."
		}
		posted := map[string]string{}
		for k, v := range changes {
			posted[k] = v
		}
		fs, ferr := a.fields(c, id, errs, posted)
		if ferr != nil {
			return ferr
		}
		st, _ := a.kit.Module(id)
		return a.page(c.Status(fiber.StatusUnprocessableEntity), "settings.html", pageData{Title: st.Name + " settings", Module: st, Fields: fs, Error: msg})
	}
	return c.Redirect(a.kit.cfg.AdminPrefix+"/modules/"+id+"?flash=Saved", fiber.StatusSeeOther)
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
