#!/bin/sh
# Install the Debian packages shmstore needs to build and test. As root it installs
# what is missing; otherwise it prints the exact command to run.
set -eu
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev libcmocka-dev \
      python3-dev python3-numpy python3-pytest python3-setuptools python3-wheel python3-venv python3-pip \
      libncurses-dev tmux python3-matplotlib libhdf5-dev zlib1g-dev python3-h5py libzmq3-dev python3-zmq iproute2"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends $missing
else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run: sudo apt-get install -y$missing" >&2
    exit 1
fi
