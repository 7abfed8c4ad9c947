#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. Prints go test's
# per-package results, failures, skips with their reasons, and a closing
# "N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."

toolbin=$PWD/.cache/bin
mkdir -p "$toolbin"
fail=0

echo "== generated code matches its .proto files"
GOBIN=$toolbin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 &&
GOBIN=$toolbin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1 || fail=1
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
if PATH=$toolbin:$PATH protoc -I plugins/sdk/proto --go_out="$gen" --go_opt=module=github.com/holdfast/holdfast \
     --go-grpc_out="$gen" --go-grpc_opt=module=github.com/holdfast/holdfast \
     $(find plugins/sdk/proto -name '*.proto' | sort); then
  if ! diff -r "$gen/plugins/sdk/internal/pluginpb" plugins/sdk/internal/pluginpb; then
    echo "generated code is stale: run 'make proto' and commit the result"
    fail=1
  fi
else
  echo "protoc failed"; fail=1
fi

echo "== go vet"
go vet ./... || fail=1

echo "== go test"
go build -o "$toolbin/testsummary" ./tools/cmd/testsummary || exit 1
go test -json -count=1 -timeout 18m ./... 2>&1 | "$toolbin/testsummary"
st=("${PIPESTATUS[@]}")
[[ ${st[0]} -eq 0 && ${st[1]} -eq 0 ]] || fail=1
exit $fail
