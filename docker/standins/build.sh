#!/usr/bin/env bash
# Stand-ins for the images compose.yaml takes from registries (rabbitmq:3.13-management, mongo:7, the MLflow
# server), FOR TESTS on machines that reach no image registry (tests/e2e/test_compose_up.py), NEVER FOR PRODUCTION:
# RabbitMQ from Debian's package, the MLflow server from uv.lock, and nx-27017 (a MongoDB wire-protocol server
# over SQLite) for MongoDB, each built on the locally made base image (docker/base-image.sh), nothing pulled.
#
#   docker/standins/build.sh
#
# Each image is tagged with a hash of what it is built from (its folder, the lock's pins, the base image's name),
# so a machine builds each once and rebuilds it only when one of those changes; older tags are removed. Prints
# the variables docker/compose.test.yaml reads: STANDIN_RABBITMQ_IMAGE=..., STANDIN_MONGO_IMAGE=...,
# STANDIN_MLFLOW_IMAGE=... Needs uv on PATH (the lock's pins) and, for a missing base image, mmdebstrap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base=$(sed -n 's/^ *base_image: *"\(.*\)"/\1/p' "$root/bentofile.yaml")
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

podman image exists "$base" || "$root/docker/base-image.sh" "$base" podman >/dev/null
# The Python stand-ins install the lock's versions of what they need (mlflow, nx-27017) and their dependencies.
(cd "$root" && uv export --quiet --frozen --all-groups --no-emit-project --no-hashes --no-annotate --no-header) \
  > "$context/constraints.txt"

build() {  # NAME: docker/standins/NAME -> localhost/nbship-standin-NAME:<hash of its inputs>
  local name=$1 folder="$here/$1" image hash
  mkdir -p "$context/$name" && cp -r "$folder/." "$context/$name/"
  cp "$context/constraints.txt" "$context/$name/"
  hash=$( (echo "$base"; cd "$context/$name" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
  image="localhost/nbship-standin-$name:$hash"
  if ! podman image exists "$image"; then
    build_image "$image" "$context/$name" >&2
    remove_other_tags "localhost/nbship-standin-$name" "$hash"
  fi
  echo "STANDIN_${name^^}_IMAGE=$image"
}

build_image() {  # IMAGE CONTEXT: as `python -m pipeline container` builds (no runc inside, the host's network)
  local options=(--pull=never --network=host --layers=false --file "$2/Containerfile" --tag "$1" --label nbship.standin=true)
  # Behind a proxy that intercepts TLS the build's downloads need its CA: mounted for the build only.
  if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then
    options+=(--volume "$(realpath "$SSL_CERT_FILE"):/etc/ssl/certs/ca-certificates.crt:ro")
  fi
  BUILDAH_ISOLATION=chroot podman build --quiet "${options[@]}" "$2" >/dev/null
}

remove_other_tags() {  # REPOSITORY HASH
  local tag
  for tag in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$1"); do
    [ "$tag" = "$1:$2" ] || podman rmi "$tag" >/dev/null 2>&1 || true
  done
}

for name in rabbitmq mongo mlflow; do build "$name"; done
