package main_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// A code typed in lower case with stray spaces still connects.
func TestCodeTypedLooselyConnects(t *testing.T) {
	a := seeded(t, siteOptions{})
	code := a.newCode(t).Code
	c, err := client.Connect(context.Background(), a.url, "  "+strings.ToLower(code)+"\n", client.Options{})
	if err != nil {
		t.Fatalf("connect with %q: %v", strings.ToLower(code), err)
	}
	defer c.Close()
	if _, err := c.ListTables(context.Background()); err != nil {
		t.Fatal(err)
	}
}
