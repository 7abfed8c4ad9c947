# Holdfast build. `make demo` and `make test` are the two commands a newcomer
# types; each installs what it needs through tools/install-deps.sh.

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLBIN   := $(CURDIR)/.cache/bin
PLUGINDIR := $(BIN)/plugins
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/holdfast/holdfast/appliance/version.Version=$(VERSION)

PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
STATICCHECK        := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build plugins test demo proto lint deps-test deps-demo deps-proto clean

all: build

build: plugins
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/holdfastd ./appliance/cmd/holdfastd
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/holdfast ./tools/cmd/holdfast

# Each plugin is its own binary in its own folder with a sealed manifest
# (its SHA-256), exactly as a partner would ship one.
plugins:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(PLUGINDIR)/fileserver/holdfast-fileserver ./plugins/scenario/fileserver/cmd/holdfast-fileserver
	$(GO) run ./tools/cmd/holdfast plugins seal --kind scenario --type fileserver --version $(VERSION) $(PLUGINDIR)/fileserver/holdfast-fileserver
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(PLUGINDIR)/tcp/holdfast-tcp ./plugins/transport/tcp/cmd/holdfast-tcp
	$(GO) run ./tools/cmd/holdfast plugins seal --kind transport --type tcp --version $(VERSION) $(PLUGINDIR)/tcp/holdfast-tcp

deps-test:
	bash tools/install-deps.sh test

deps-demo:
	bash tools/install-deps.sh demo

deps-proto:
	bash tools/install-deps.sh proto
	GOBIN=$(TOOLBIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(TOOLBIN) $(GO) install $(PROTOC_GEN_GO_GRPC)

test: deps-test
	bash tools/test.sh

demo: deps-demo build
	bash tools/demo.sh $(BIN)

proto: deps-proto
	PATH=$(TOOLBIN):$$PATH protoc -I plugins/sdk/proto \
	  --go_out=. --go_opt=module=github.com/holdfast/holdfast \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/holdfast/holdfast \
	  $$(find plugins/sdk/proto -name '*.proto' | sort)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	GOBIN=$(TOOLBIN) $(GO) install $(STATICCHECK)
	$(TOOLBIN)/staticcheck ./...

clean:
	rm -rf $(BIN)
