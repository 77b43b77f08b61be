#!/bin/sh
# Provision one raftlab node on Debian 12 (bookworm): system packages, raftlab in a venv, data dir.
#
#   sh provision.sh [--source DIR] [--wheelhouse DIR] [--venv DIR] [--data-dir DIR]
#
# --source DIR      the raftlab project folder to install from (default: /vagrant, the synced folder)
# --wheelhouse DIR  install offline from wheels built on the controller (`pip wheel -w DIR 'raftlab[fuse]'`)
#                   with `pip install --no-index --find-links DIR`; default: ./wheelhouse next to
#                   this script when it exists. Hosts without registry access need this.
# --venv DIR        where raftlab is installed (default /opt/raftlab/venv; its python is what the
#                   nodes file's `python=` names)
# --data-dir DIR    the node's working directory (default /var/lib/raftlab)
#
# Idempotent: a second run changes nothing that is already in place (packages already there are
# not fetched again; raftlab is reinstalled only when the wheel or source changed). Runs unchanged
# as root or as a user with passwordless sudo (it re-executes itself under `sudo -n`).
set -eu

SOURCE=/vagrant
WHEELHOUSE=
VENV=/opt/raftlab/venv
DATA=/var/lib/raftlab
HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$HERE/wheelhouse" ] && WHEELHOUSE=$HERE/wheelhouse
PACKAGES="python3 python3-venv python3-pip fuse3 iptables nftables sudo procps iproute2 libfaketime"

die() { echo "provision.sh: $*" >&2; exit 1; }
say() { echo "provision.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --source) [ $# -ge 2 ] || die "--source needs a directory"; SOURCE=$2; shift 2 ;;
    --wheelhouse) [ $# -ge 2 ] || die "--wheelhouse needs a directory"; WHEELHOUSE=$2; shift 2 ;;
    --venv) [ $# -ge 2 ] || die "--venv needs a directory"; VENV=$2; shift 2 ;;
    --data-dir) [ $# -ge 2 ] || die "--data-dir needs a directory"; DATA=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root"
  exec sudo -n sh "$0" --source "$SOURCE" --wheelhouse "$WHEELHOUSE" --venv "$VENV" --data-dir "$DATA"
fi

# 1. System packages: only the missing ones are fetched (a host without a registry can be
#    provisioned when they are all there already).
missing=
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?); missing:$missing"
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || die "apt-get install$missing failed"
else
  say "Debian packages already installed"
fi
[ -c /dev/fuse ] || modprobe fuse 2>/dev/null || say "warning: no /dev/fuse; disk faults will be unavailable"

# 2. raftlab in a venv.
[ -x "$VENV/bin/python" ] || { say "creating venv $VENV"; python3 -m venv "$VENV"; }
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
STAMP=$VENV/.raftlab-installed
if [ -n "$WHEELHOUSE" ]; then
  [ -d "$WHEELHOUSE" ] || die "wheelhouse $WHEELHOUSE is not a directory"
  ls "$WHEELHOUSE"/raftlab-*.whl >/dev/null 2>&1 || die "no raftlab wheel in $WHEELHOUSE"
  want="wheels $(cat "$WHEELHOUSE"/*.whl | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    say "installing raftlab from $WHEELHOUSE (offline)"
    $PIP install --no-index --find-links "$WHEELHOUSE" "raftlab[fuse]"
    $PIP install --no-index --find-links "$WHEELHOUSE" --force-reinstall --no-deps raftlab
    echo "$want" > "$STAMP"
  fi
else
  [ -f "$SOURCE/pyproject.toml" ] || die "$SOURCE has no pyproject.toml: pass --source DIR or --wheelhouse DIR"
  want="source $(cd "$SOURCE" && find pyproject.toml raftlab impl checker nemesis workloads -name '*.py' -o -name '*.toml' 2>/dev/null | sort | xargs cat | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    say "installing raftlab from $SOURCE"
    $PIP install "$SOURCE[fuse]"
    $PIP install --force-reinstall --no-deps "$SOURCE"
    echo "$want" > "$STAMP"
  fi
fi
[ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && say "raftlab is installed in $VENV"
ln -sf "$VENV/bin/raftlab" /usr/local/bin/raftlab

# 3. The node's working directory.
mkdir -p "$DATA"
chmod 755 "$DATA"
"$VENV/bin/python" -c 'import raftlab, mfusepy' || die "raftlab or mfusepy does not import in $VENV"
say "ready: python $VENV/bin/python, data dir $DATA"
