package client

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// paymentSender is pagila's payment in small on a sender: partitioned by range on
// payment_date, monthly, 2500 rows over three partitions.
const paymentSender = `
CREATE TABLE payment (payment_id serial, customer_id integer NOT NULL, amount numeric(5,2) NOT NULL,
	payment_date timestamp with time zone NOT NULL, PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);
DO $$ BEGIN FOR m IN 1..3 LOOP
	EXECUTE format('CREATE TABLE %I PARTITION OF payment FOR VALUES FROM (%L) TO (%L)', 'payment_p2022_0' || m,
		make_timestamptz(2022, m, 1, 0, 0, 0, 'UTC'), make_timestamptz(2022, m + 1, 1, 0, 0, 0, 'UTC'));
END LOOP; END $$;
INSERT INTO payment (customer_id, amount, payment_date)
	SELECT i % 100, (i % 1000) / 100.0, '2022-01-01 00:00:00+00'::timestamptz + (i * interval '50 minutes') FROM generate_series(1, 2500) i;`

// TestPullPartitionedTable: a pull of a partitioned table the receiver lacks lists
// and sends it once (its partitions are not tables of their own, so no row arrives
// twice), creates it partitioned with the sender's partitions, and puts every row in
// its partition; pulled again into the now existing table, every strategy counts right.
func TestPullPartitionedTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sender, newCode := senderSite(t, paymentSender)
	pool := receiverSite(t, ctx)
	pull := func(strategy syncapi.Strategy) map[string]Result {
		t.Helper()
		c, err := Connect(ctx, sender.URL, newCode(), Options{Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		results, err := c.TransferAll(ctx, pool, TransferAllOptions{Strategy: strategy,
			TransferOptions: TransferOptions{CreateMissing: true, BatchSize: 1000}})
		if err != nil {
			t.Fatalf("pull: %v (%+v)", err, results)
		}
		if len(results) != 1 {
			t.Fatalf("tables pulled: %v, want payment alone", keys(results))
		}
		return results
	}
	r := pull(syncapi.Skip)["payment"]
	if !r.TableCreated || r.Created != 2500 || r.Rows != 2500 || r.Failed != 0 || len(r.Warnings) != 0 {
		t.Fatalf("payment: %+v", r)
	}
	layout := `SELECT p.relname || ' ' || pg_get_expr(p.relpartbound, p.oid) || ' ' || (SELECT count(*) FROM payment WHERE tableoid = p.oid)
		FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = 'public.payment'::regclass ORDER BY 1`
	want := rowsOf(t, testsupport.Pool(t, sender.DB), layout)
	if got := rowsOf(t, pool, layout); !reflect.DeepEqual(got, want) || len(got) != 3 {
		t.Errorf("receiver's partitions\n %q\nwant\n %q", got, want)
	}
	if got := rowsOf(t, pool, `SELECT pg_get_partkeydef('public.payment'::regclass)`); got[0] != "RANGE (payment_date)" {
		t.Errorf("partition key %q", got)
	}
	for _, tc := range []struct {
		strategy                  syncapi.Strategy
		created, updated, skipped int
	}{{syncapi.Skip, 0, 0, 2500}, {syncapi.Overwrite, 0, 2500, 0}, {syncapi.Merge, 0, 2500, 0}} {
		r := pull(tc.strategy)["payment"]
		if r.TableCreated || r.Created != tc.created || r.Updated != tc.updated || r.Skipped != tc.skipped || r.Failed != 0 {
			t.Errorf("%s into the existing table: %+v", tc.strategy, r)
		}
	}
	if got := rowsOf(t, pool, `SELECT count(*)::text FROM payment`); got[0] != "2500" {
		t.Errorf("%s rows, want 2500", got[0])
	}
}

func keys(m map[string]Result) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
