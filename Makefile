# FiberKit developer commands. `make help` lists them.
GO ?= go
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
TOOLS := $(CURDIR)/.cache/tools

.PHONY: help demo hostapp test lint proto bench plugins

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

plugins: ## build every module binary into bin/
	$(GO) build -o bin/fiberkit-sync ./plugins/sync
	$(GO) build -o bin/hello ./examples/plugins/hello
	$(GO) build -o bin/greeter-client ./examples/plugins/greeter-client
	$(GO) build -o bin/sync-report ./examples/plugins/sync-report
	$(GO) build -o bin/todo ./examples/plugins/todo

hostapp: plugins ## run the example host app with its modules (admin at /admin/fiberkit/)
	$(GO) run ./examples/hostapp

demo: ## run the two-site demo (starts its own PostgreSQL when DATABASE_URL is unset)
	$(GO) run ./examples/twosite

test: ## run every test with the race detector (starts its own PostgreSQL)
	$(GO) test -race -count=1 -timeout 40m ./...

bench: ## run the benchmarks (kit overhead, import, site-to-site sync against the COPY pipe, live sync, follow lag)
	$(GO) run ./bench/kitbench
	$(GO) run ./bench/importbench
	$(GO) run ./bench/syncbench
	$(GO) run ./bench/livebench
	$(GO) run ./bench/followbench
	$(GO) run ./bench/shapebench

lint: ## gofmt, go vet and staticcheck
	test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

proto: ## regenerate sdk/transport/pluginv1 from sdk/transport/proto (needs protoc; Debian: protobuf-compiler)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(TOOLS):$$PATH protoc -I sdk/transport/proto \
		--go_out=sdk/transport/pluginv1 --go_opt=paths=source_relative \
		--go-grpc_out=sdk/transport/pluginv1 --go-grpc_opt=paths=source_relative \
		sdk/transport/proto/plugin.proto
