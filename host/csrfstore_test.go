package host_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/fiberkit/fiberkit/host"
)

func TestCSRFTokenWorksAcrossReplicas(t *testing.T) {
	a := startSite(t, kitOptions{})
	b := startSite(t, kitOptions{db: a.db}) // a second replica on the same database
	c := adminClient(t)                     // cookies are per host, so both replicas see them
	_, page := adminDo(t, c, "GET", a.url+"/admin/fiberkit/", nil)
	tok := csrfInput.FindStringSubmatch(page)[1]
	code, _ := adminDo(t, c, "POST", b.url+"/admin/fiberkit/modules/tm/toggle", url.Values{"enabled": {"true"}, "_csrf": {tok}})
	if code != http.StatusSeeOther {
		t.Fatalf("a token from replica A posted to replica B: %d", code)
	}
	b.waitState(t, "tm", host.StateRunning)
}
