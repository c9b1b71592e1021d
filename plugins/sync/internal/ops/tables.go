package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// The operations on this site's tables: list, describe, count, read, write, create.

func listTables(ctx context.Context, st *site.Site, in syncapi.ListTablesRequest) ([]catalog.Table, error) {
	return catalog.ListTables(ctx, st.Pool, catalog.ListOptions{Schemas: in.Schemas, Exclude: in.Exclude, IncludeKit: in.IncludeKit,
		Exact: in.Exact, Estimate: in.Estimate})
}

func getSchema(ctx context.Context, st *site.Site, in syncapi.TableRequest) (*catalog.Schema, error) {
	return tableErr(catalog.GetSchema(ctx, st.Pool, in.Table))
}

func getCount(ctx context.Context, st *site.Site, in syncapi.TableRequest) (int64, error) {
	return tableErr(catalog.Count(ctx, st.Pool, in.Table))
}

func tableExists(ctx context.Context, st *site.Site, in syncapi.TableRequest) (bool, error) {
	return catalog.Exists(ctx, st.Pool, in.Table)
}

func exportRecords(ctx context.Context, st *site.Site, in syncapi.RecordsRequest) (exporter.Page, error) {
	snap, err := exporter.Begin(ctx, st.Pool)
	if err != nil {
		return exporter.Page{}, err
	}
	defer snap.Close(ctx)
	sch, err := tableErr(catalog.GetSchema(ctx, snap.Querier(), in.Table))
	if err != nil {
		return exporter.Page{}, err
	}
	if in.Limit <= 0 {
		in.Limit = syncapi.DefaultRecordsLimit
	}
	return snap.Records(ctx, sch, in.Offset, min(in.Limit, syncapi.MaxRecordsLimit))
}

func importRecords(ctx context.Context, st *site.Site, in syncapi.ImportRequest) (importer.Result, error) {
	strategy, err := importer.ParseStrategy(string(in.Strategy))
	if err != nil {
		return importer.Result{}, invalid(err)
	}
	im, err := importer.New(ctx, st.Pool, in.Table, importer.Options{Strategy: strategy})
	if err != nil {
		return importer.Result{}, importErr(err)
	}
	res, err := im.ImportRecords(ctx, in.Records)
	if err != nil {
		return importer.Result{}, importErr(err)
	}
	return res, im.Finish(ctx)
}

// createTableInput is create_table's request (syncapi.CreateTableRequest) with the
// definition undecoded: PhoenixKit's shape says more of a column's type
// (max_length, precision, element_type) than syncapi.Column holds.
type createTableInput struct {
	Table  string          `json:"table"`
	Schema json.RawMessage `json:"schema"`
}

func createTable(ctx context.Context, st *site.Site, in createTableInput) (ddl.Result, error) {
	sch, err := tableDefinition(in)
	if err != nil {
		return ddl.Result{}, invalid(err)
	}
	// Warnings name what of a peer's definition was not recreated.
	return ddl.Create(ctx, st.Pool, sch)
}

// tableDefinition is the table create_table makes: the definition as get_schema
// returns it, or in the seed's (PhoenixKit's) shape — no schema named, columns as
// information_schema spells their types — completed to ours in public. Table names
// the table, over the definition's own name.
func tableDefinition(in createTableInput) (*catalog.Schema, error) {
	if len(in.Schema) == 0 || string(in.Schema) == "null" {
		return nil, errors.New("schema is required")
	}
	var sch catalog.Schema
	if err := json.Unmarshal(in.Schema, &sch); err != nil {
		return nil, fmt.Errorf("decode schema: %w", err)
	}
	if sch.Schema == "" {
		if err := syncapi.FromPhoenixKit(in.Schema, &sch); err != nil {
			return nil, err
		}
	}
	if in.Table != "" {
		sch.Name = in.Table
	}
	if sch.Name == "" {
		return nil, errors.New("table is required (the request's table or the schema's)")
	}
	return &sch, nil
}
