#!/usr/bin/env bash
# Rebuilds examples/acme/acme.binpb, the descriptor set of the acme example's protos,
# which the bridge loads with --descriptor-set. Run it after changing
# examples/acme/proto, and commit the result; CI reruns it and fails on any diff.
#
# The file is a google.protobuf.FileDescriptorSet (--as-file-descriptor-set: without
# it buf writes its own Image format, a superset with buf-only fields) holding the
# acme module's files and everything they import (google/protobuf/timestamp.proto,
# duration.proto), in dependency order, with comments (source info) so grpcurl
# describe shows them through reflection. Only the acme module: not bridge.v1, which
# the bridge is compiled with.
#
# Output depends on the buf version (it bundles the well-known types), so buf is
# pinned. BUF may name an installed buf of that version, e.g. BUF=.ci/bin/buf.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUF_VERSION=1.75.0
BUF=${BUF:-go run github.com/bufbuild/buf/cmd/buf@v$BUF_VERSION}
got=$($BUF --version)
if [ "$got" != "$BUF_VERSION" ]; then
  echo "build-descriptor-set: buf is $got, want $BUF_VERSION (set BUF)" >&2
  exit 1
fi

$BUF build examples/acme/proto --as-file-descriptor-set -o examples/acme/acme.binpb
