#!/usr/bin/env bash
# Builds recoverbot's container image into OUT (make image: bin/recoverbot-image.tar)
# without a Docker daemon or a registry, and prints its digest. The same commit
# builds the same bytes with the same Go release and CA bundle (make test-image
# builds it twice and compares):
#   - the binary: CGO_ENABLED=0 (static: the image has no libc), -tags timetzdata
#     (time zone data inside: the image has no /usr/share/zoneinfo), -trimpath (no
#     build paths), -buildvcs=false (the commit goes in with -X instead, so a
#     build from a tarball of the source needs no .git), -buildid= (no per-build id);
#   - the image: every timestamp is the commit's time (SOURCE_DATE_EPOCH, as
#     reproducible-builds.org defines it), entries sorted (deploy/image/main.go).
# VERSION and COMMIT default to `git describe --tags --always --dirty` and the
# commit hash ("-dirty" too when the tree has changes: such an image is not the
# commit's). CA certificates come from the build machine (CA_CERTS).
#
# Usage: deploy/image/build.sh OUT   (GO, VERSION, COMMIT, SOURCE_DATE_EPOCH, IMAGE_NAME, CA_CERTS)
set -euo pipefail
out="${1:?usage: build.sh OUT.tar}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
go="${GO:-go}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

dirty=""
[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ] && dirty="-dirty"
version="${VERSION:-$(git -C "$repo" describe --tags --always --dirty)}"
commit="${COMMIT:-$(git -C "$repo" rev-parse HEAD)$dirty}"
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}"
arch="$("$go" env GOARCH)"

work="$(mktemp -d "${TMPDIR:-/tmp}/recoverbot-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(
  cd "$repo"
  CGO_ENABLED=0 GOOS=linux GOFLAGS= "$go" build -trimpath -buildvcs=false -tags timetzdata \
    -ldflags "-s -w -buildid= -X main.version=$version -X main.commit=$commit" \
    -o "$work/recoverbot" .
)
# The builder has its own module (deploy/image/go.mod): the bot's go.mod never
# carries go-containerregistry. -mod=readonly: its go.sum is the truth.
cd "$repo/deploy/image"
GOWORK=off GOFLAGS=-mod=readonly "$go" run . -binary "$work/recoverbot" -version "$version" -commit "$commit" \
  -created "$epoch" -arch "$arch" -name "${IMAGE_NAME:-recoverbot}" -ca-certs "${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" \
  -out "$out"
echo "build.sh: ${IMAGE_NAME:-recoverbot}:$version ($commit) in $out" >&2
