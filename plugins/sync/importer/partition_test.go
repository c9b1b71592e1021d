package importer_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// paymentTable is pagila's payment in small: partitioned by range of payment_date,
// the key (payment_date, payment_id) with payment_id from a serial, two rows there.
const paymentTable = `
DROP TABLE IF EXISTS payment;
CREATE TABLE payment (payment_id serial, customer int NOT NULL, amount numeric(5,2) NOT NULL,
	payment_date timestamptz NOT NULL, note text, PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);
CREATE TABLE payment_p2022_01 PARTITION OF payment FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2022-02-01 00:00:00+00');
CREATE TABLE payment_p2022_02 PARTITION OF payment FOR VALUES FROM ('2022-02-01 00:00:00+00') TO ('2022-03-01 00:00:00+00');
CREATE TABLE payment_p2022_03 PARTITION OF payment FOR VALUES FROM ('2022-03-01 00:00:00+00') TO ('2022-04-01 00:00:00+00');
INSERT INTO payment VALUES (1, 1, 1.00, '2022-01-10 00:00:00+00', 'old1'), (2, 1, 2.00, '2022-02-10 00:00:00+00', 'old2');
SELECT setval('payment_payment_id_seq', 2);`

// paymentRows lists each row as partition:id:customer:amount:note, in key order.
const paymentRows = `SELECT tableoid::regclass || ':' || payment_id || ':' || customer || ':' || amount || ':' || coalesce(note, '∅')
	FROM payment ORDER BY payment_id, payment_date`

var paymentCols = []string{"payment_id", "customer", "amount", "payment_date", "note"}

// Two rows with existing keys (one of them with a NULL note), two new ones in two
// partitions, and a second row for key 3 that wins over the first.
const paymentBatch = "1\t7\t1.50\t2022-01-10 00:00:00+00\t\\N\n" +
	"2\t7\t2.50\t2022-02-10 00:00:00+00\tnew2\n" +
	"3\t7\t3.00\t2022-03-05 00:00:00+00\tfirst3\n" +
	"4\t7\t4.00\t2022-01-20 00:00:00+00\tnew4\n" +
	"3\t8\t3.30\t2022-03-05 00:00:00+00\tnew3\n"

// A partitioned table that exists on the receiver (pagila's payment) imports with
// every strategy: counts right, every row in the partition its key belongs to. The
// count of inserts against updates cannot read xmax through a partitioned table.
func TestPartitionedTargetEveryStrategy(t *testing.T) {
	s := newSite(t)
	for _, tc := range []struct {
		strategy                  importer.Strategy
		created, updated, skipped int
		want                      []string
	}{
		{importer.Skip, 2, 0, 3, []string{
			"payment_p2022_01:1:1:1.00:old1", "payment_p2022_02:2:1:2.00:old2",
			"payment_p2022_03:3:8:3.30:new3", "payment_p2022_01:4:7:4.00:new4"}},
		{importer.Overwrite, 2, 2, 1, []string{
			"payment_p2022_01:1:7:1.50:∅", "payment_p2022_02:2:7:2.50:new2",
			"payment_p2022_03:3:8:3.30:new3", "payment_p2022_01:4:7:4.00:new4"}},
		{importer.Merge, 2, 2, 1, []string{
			"payment_p2022_01:1:7:1.50:old1", "payment_p2022_02:2:7:2.50:new2",
			"payment_p2022_03:3:8:3.30:new3", "payment_p2022_01:4:7:4.00:new4"}},
		// Append: payment_id from the serial, payment_date (no default) as it comes.
		{importer.Append, 5, 0, 0, []string{
			"payment_p2022_01:1:1:1.00:old1", "payment_p2022_02:2:1:2.00:old2",
			"payment_p2022_01:3:7:1.50:∅", "payment_p2022_02:4:7:2.50:new2", "payment_p2022_03:5:7:3.00:first3",
			"payment_p2022_01:6:7:4.00:new4", "payment_p2022_03:7:8:3.30:new3"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			s.exec(t, paymentTable)
			res := importRows(t, s, "payment", tc.strategy, paymentCols, paymentBatch)
			checkResult(t, res, tc.created, tc.updated, tc.skipped, 0)
			checkRows(t, s, paymentRows, tc.want...)
		})
	}
}

// A row no partition takes is a record error of its own; the batch's other rows land,
// counted as the batch statement would count them (the row-by-row replay counts
// inserts and updates the same way).
func TestPartitionedTargetRowByRow(t *testing.T) {
	s := newSite(t)
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge, importer.Append} {
		t.Run(string(strategy), func(t *testing.T) {
			s.exec(t, paymentTable)
			res := importRows(t, s, "payment", strategy, paymentCols, paymentBatch+"9\t7\t9.00\t2030-01-01 00:00:00+00\tnowhere\n")
			want := map[importer.Strategy][3]int{importer.Skip: {2, 0, 3}, importer.Overwrite: {2, 2, 1},
				importer.Merge: {2, 2, 1}, importer.Append: {5, 0, 0}}[strategy]
			checkResult(t, res, want[0], want[1], want[2], 1)
			if len(res.Errors) != 1 {
				t.Fatalf("errors %+v", res.Errors)
			}
			checkRows(t, s, `SELECT count(*)::text FROM payment WHERE payment_date >= '2030-01-01'`, "0")
		})
	}
}

// Records leaving columns out (one statement per set of columns) and an empty
// partitioned table (COPY straight in) import the same way.
func TestPartitionedTargetRecordsAndEmptyTable(t *testing.T) {
	s := newSite(t)
	s.exec(t, paymentTable)
	res := importRecords(t, s, "payment", importer.Overwrite, `[
		{"payment_id": "1", "payment_date": "2022-01-10 00:00:00+00", "customer": "5", "amount": "5.00"},
		{"payment_id": "5", "payment_date": "2022-03-15 00:00:00+00", "customer": "5", "amount": "5.50", "note": "new5"}]`)
	checkResult(t, res, 1, 1, 0, 0)
	checkRows(t, s, paymentRows, "payment_p2022_01:1:5:5.00:old1", "payment_p2022_02:2:1:2.00:old2", "payment_p2022_03:5:5:5.50:new5")

	s.exec(t, "TRUNCATE payment")
	res = importRows(t, s, "payment", importer.Skip, paymentCols, paymentBatch)
	checkResult(t, res, 4, 0, 1, 0)
	ctx := context.Background()
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM payment_p2022_01").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows in payment_p2022_01: %d, %v", n, err)
	}
}
