#!/usr/bin/env bash
# The image's base, made here instead of pulled (no image registry is reachable on our build machines):
# Debian bookworm (minbase) with Python 3.11, the packages BentoML's generated Dockerfile installs anyway, and uv,
# so that the Bento's build neither downloads Python nor bootstraps uv with pip.
#
#   docker/base-image.sh IMAGE ENGINE     e.g. docker/base-image.sh localhost/nbship-base:bookworm-py3.11 podman
#
# Needs mmdebstrap (Debian package) and uv on PATH. The Debian mirror is the host's apt sources.
set -euo pipefail
image=${1:?image name}
engine=${2:?podman, buildah or docker}
uv_binary=$(command -v uv) || { echo "uv is not on PATH" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Installed here so the generated Dockerfile's `apt-get install` of them has nothing left to do.
bentoml_packages=ca-certificates,gnupg2,bash,build-essential,git
mmdebstrap --quiet --variant=minbase --include="python3.11,$bentoml_packages" \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="copy-in $uv_binary /usr/local/bin" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$work/rootfs.tar"

case "$engine" in
  buildah) container=$(buildah from scratch)
           buildah add "$container" "$work/rootfs.tar" / >/dev/null
           buildah config --cmd '["/bin/bash"]' --env LANG=C.UTF-8 "$container"
           buildah commit --quiet "$container" "$image" >/dev/null
           buildah rm "$container" >/dev/null ;;
  *)       "$engine" import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$work/rootfs.tar" "$image" >/dev/null ;;
esac
echo "$image"
