package main_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// A pull with the default compression (auto) through a slow link switches zstd on
// once the receiver sees that the link holds it back: fewer bytes cross than the
// same pull sends uncompressed, and the rows are the same.
func TestAutoCompressionOnASlowLink(t *testing.T) {
	a := bigSender(t)
	ctx := context.Background()
	pull := func(url, compression string) client.Result {
		t.Helper()
		b := startSite(t, siteOptions{})
		c, err := client.Connect(ctx, url, a.newCode(t).Code, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		res, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, Compression: compression})
		if err != nil || res.Created != 60000 {
			t.Fatalf("%s pull: %+v, %v", compression, res, err)
		}
		sameTable(t, a, b, "big", "id", "after a "+compression+" pull")
		return res
	}
	plain := pull(a.url, wire.CompressionNone)
	// 2 MB/s: the 60,000 rows (~4 MB uncompressed) would take two seconds.
	slow := pull("http://"+testsupport.SlowLink(t, a.url, 2<<20), "")
	if slow.Bytes >= plain.Bytes*8/10 {
		t.Fatalf("auto on a slow link sent %d bytes; uncompressed is %d: compression never came on", slow.Bytes, plain.Bytes)
	}
}
