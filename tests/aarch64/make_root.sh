#!/usr/bin/env bash
# The arm64 Python root that runs AArch64 bundles under qemu user-mode
# emulation (ktapjit/bundle/emulate.py), and Debian's arm64 kernel headers
# (the independent check of syscount's AArch64 table). Idempotent: a root
# whose stamp matches this script and the wheels' versions is kept.
#
#   tests/aarch64/make_root.sh ROOT PIP
#
# ROOT: where the root goes (outside the repository: it is ~100 MB);
# PIP: the venv's pip, which fetches the aarch64 wheels from PyPI.
# Needs root and apt-get for the Debian packages; without them it says what
# is missing and exits 0, and the AArch64 tests skip, saying why.
set -euo pipefail
root=$1
pip=$2
here=$(cd "$(dirname "$0")" && pwd)

packages=()
command -v qemu-aarch64-static > /dev/null || command -v qemu-aarch64 > /dev/null || packages+=(qemu-user-static)
command -v mmdebstrap > /dev/null || packages+=(mmdebstrap)
[ -e /usr/aarch64-linux-gnu/include/asm-generic/unistd.h ] || packages+=(linux-libc-dev-arm64-cross)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null) \
      || { echo "make: could not install ${packages[*]}: the AArch64 tests will skip"; exit 0; }
  else
    echo "make: ${packages[*]} not installed (needs root and apt-get): the AArch64 tests will skip"
    exit 0
  fi
fi

# The wheels match the host's versions, so both sides run the same ktapjit.
versions=$("$pip" list --format=freeze 2>/dev/null | grep -iE '^(llvmlite|lark|tqdm)==' | sort | tr '\n' ' ')
stamp="$(sha256sum "$here/make_root.sh" | cut -c1-16) $versions"
if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$stamp" ]; then
  exit 0
fi

echo "make: building the arm64 Python root in $root"
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
# extract: the packages unpacked, no maintainer scripts (nothing needs to
# run inside the root to build it, so binfmt_misc is not needed).
mmdebstrap --quiet --arch=arm64 --variant=extract \
  --include=python3.11,libpython3.11-stdlib,libffi8,zlib1g,libc6 \
  bookworm "$root.tmp"
ln -sf python3.11 "$root.tmp/usr/bin/python3"
# shellcheck disable=SC2086
"$pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp \
  --target "$root.tmp/opt/ktapjit-site" $versions
echo "$stamp" > "$root.tmp/.stamp"
rm -rf "$root"
mv "$root.tmp" "$root"
