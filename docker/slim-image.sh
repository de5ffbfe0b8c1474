#!/usr/bin/env bash
# The Bento's setup script (bentofile.yaml `docker.setup_script`): BentoML's Dockerfile runs it as root right after
# installing the Python packages. It removes what serving never reads; `python -m pipeline container` squashes the
# build into one layer (podman, buildah), so that what is removed here is in no layer of the image.
set -euo pipefail
if [ "${NBSHIP_SQUASHED_BUILD:-false}" != true ]; then
  echo "slim-image.sh: the build keeps its layers (Docker): nothing removed here would leave the image" >&2
  exit 0
fi
site=$(/app/.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

if [ -d "$site/tensorflow" ]; then  # the TensorFlow image's; a lean image has none
  # TensorFlow's C++ headers, for compiling custom ops against it (about 290 MB).
  rm -rf "$site/tensorflow/include"
  # The symbol tables of TensorFlow's own libraries; what the dynamic linker reads (.dynsym) stays (about 240 MB).
  # Only TensorFlow's: the libraries that auditwheel vendored into other wheels (numpy.libs, ...) were rewritten by
  # patchelf, and stripping those leaves them unloadable ("ELF load command address/offset not page-aligned").
  find "$site/tensorflow" -type f \( -name '*.so' -o -name '*.so.[0-9]*' \) -exec strip --strip-unneeded {} +
fi

if [ -d "$site/onnxruntime" ]; then  # both images'
  # ONNX Runtime's shared library for its C and C++ API (about 34 MB). The Python module (capi/
  # onnxruntime_pybind11_state) has the runtime linked in: it neither links (readelf -d: libc, libstdc++, libm
  # and the like only) nor opens this one.
  rm -f "$site"/onnxruntime/capi/libonnxruntime.so.*
fi

# uv installed the packages above; nothing after this script, and nothing in a container, runs it (about 38 MB).
rm -f /usr/local/bin/uv /usr/local/bin/uvx

# Bytecode keyed by its source's hash, not its time: the squash keeps times in whole seconds, which moves a source's
# time off the one its bytecode recorded at install, and on a read-only root Python would then compile that module
# anew at every start (1,900 of the modules the API imports; 30% of its start). Not checked: the image never changes.
/app/.venv/bin/python -m compileall -f -q -j 0 --invalidation-mode unchecked-hash "$site" > /dev/null || true

# BentoML's Dockerfile always installs a compiler and git (its default for building packages from source);
# every package here is a wheel, and nothing run in the image calls either. The base image's packages are all
# marked as installed by hand: mark them automatic but for what the image runs, so that the purge takes the
# toolchain's libraries too (about 190 MB).
apt-mark auto $(apt-mark showmanual) > /dev/null
apt-mark manual python3.11 ca-certificates bash > /dev/null
apt-get purge -y -qq --auto-remove -o APT::AutoRemove::RecommendsImportant=false \
  -o APT::AutoRemove::SuggestsImportant=false build-essential git gnupg2 > /dev/null
# The package lists of that install and uv's download cache.
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /root/.cache
