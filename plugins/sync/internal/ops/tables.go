package ops

import (
	"context"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// The operations on this site's tables: list, describe, count, read, write, create.

func listTables(ctx context.Context, st *site.Site, in syncapi.ListTablesRequest) ([]catalog.Table, error) {
	return catalog.ListTables(ctx, st.Pool, catalog.ListOptions{Schemas: in.Schemas, Exclude: in.Exclude, IncludeKit: in.IncludeKit, Exact: in.Exact})
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

func createTable(ctx context.Context, st *site.Site, in syncapi.CreateTableRequest) (ddl.Result, error) {
	if in.Schema == nil {
		return ddl.Result{}, sdk.Errorf(sdk.CodeInvalidInput, "schema is required")
	}
	// Warnings name what of a peer's definition was not recreated.
	return ddl.Create(ctx, st.Pool, in.Schema)
}
