#!/usr/bin/env bash
# The native libraries of comfy-credits-core for the manylinux_2_28 wheels
# (cibuildwheel's before-all, inside the AlmaLinux 8 container), from vcpkg,
# the same package manager as the Windows wheels (x64-windows there).
# Why not AlmaLinux's own packages: its libcurl is 7.61 (the core needs 7.85
# for CURLOPT_PROTOCOLS_STR and 7.68 for curl_multi_poll/wakeup) and its
# OpenSSL is 1.1 (the core uses OpenSSL 3's EVP_MAC). Nothing is copied into
# the repo: vcpkg builds its ports in the container, and auditwheel then
# grafts the shared libraries into the wheel.
# Result: the libraries and headers under /opt/deps (lib/, include/,
# lib/pkgconfig/), which [tool.cibuildwheel.linux] environment points at.
# NOT RUN on the development machine (no container engine there): written for
# the release workflow, see .github/workflows/release.yml.
set -euo pipefail
VCPKG_ROOT=${VCPKG_ROOT:-/opt/vcpkg}
# vcpkg's build prerequisites on AlmaLinux 8 (`perl` is the full set of core
# modules OpenSSL's Configure needs; kernel-headers for OpenSSL's linux target).
dnf install -y -q git curl zip unzip tar perl kernel-headers pkgconf-pkg-config
case "$(uname -m)" in
  x86_64) triplet=x64-linux-dynamic ;;
  aarch64) triplet=arm64-linux-dynamic; export VCPKG_FORCE_SYSTEM_BINARIES=1 ;;  # no prebuilt cmake/ninja for arm64
  *) echo "deps-vcpkg: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
if [ "$(uname -m)" = aarch64 ]; then dnf install -y -q cmake ninja-build; fi
if [ ! -x "$VCPKG_ROOT/vcpkg" ]; then
  git clone --depth 1 ${VCPKG_REF:+--branch "$VCPKG_REF"} https://github.com/microsoft/vcpkg "$VCPKG_ROOT"
  "$VCPKG_ROOT/bootstrap-vcpkg.sh" -disableMetrics
fi
# curl with OpenSSL only: the CA bundle is passed with CURLOPT_CAINFO (src/tls.c).
"$VCPKG_ROOT/vcpkg" install --triplet "$triplet" "curl[core,openssl]" cjson sqlite3 openssl
ln -sfn "$VCPKG_ROOT/installed/$triplet" /opt/deps
ls /opt/deps/lib/pkgconfig
