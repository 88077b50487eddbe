#!/usr/bin/env bash
# Runs "$@" as on a machine with no C compiler, no headers and no libcurl or
# cJSON: in a private mount namespace (started by `unshare -m`; needs root,
# which CI has), empty folders are mounted over /usr/include, /usr/lib/gcc
# (cc1, so gcc/mingw can compile nothing) and Python's include folder, and
# /dev/null over the libcurl and cJSON shared libraries. SQLite and OpenSSL
# stay visible because Python's own _sqlite3/_ssl modules link them; the
# wheel loads its own grafted copies of all four either way.
# usage: unshare -m --propagation private bash tests/no_toolchain.sh CMD...
set -euo pipefail
PY=$1; shift  # the Python whose include folder is hidden too
empty=$(mktemp -d)
for d in /usr/include /usr/lib/gcc /usr/libexec/gcc "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"; do
  [ -d "$d" ] && mount --bind "$empty" "$d"
done
for f in /usr/lib/*-linux-gnu/libcurl*.so* /usr/lib/*-linux-gnu/libcjson*.so*; do
  [ -f "$f" ] && [ ! -L "$f" ] && mount --bind /dev/null "$f"
done
exec "$@"
