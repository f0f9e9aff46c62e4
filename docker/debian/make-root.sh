#!/usr/bin/env bash
# Builds a minimal Debian bookworm root file system in ROOT (which must not exist or be empty),
# from the Debian mirror apt on this host already uses, for `docker import` as
# pwt-ci/debian:bookworm (no image registry is reachable, so there is no `FROM debian`).
#   docker/debian/make-root.sh ROOT
# Needs root. .ci/docker-images calls it, then imports `tar -C ROOT -c .`.
set -euo pipefail
ROOT=${1:?usage: make-root.sh ROOT}

command -v debootstrap >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
}

# The URIs of apt's sources (one-line *.list and deb822 *.sources) whose suites include $1,
# e.g. "bookworm" -> http://deb.debian.org/debian.
apt_uri() {
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v s="$1" '$1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == s) print $2 }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$1" '
      /^[ \t]*$/ { if (ok && uri) print uri; ok = 0; uri = ""; next }
      $1 == "URIs:" { uri = $2 }
      $1 == "Suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      END { if (ok && uri) print uri }'
  } | head -n1
}
MIRROR=$(apt_uri bookworm)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_uri bookworm-security)
SECURITY=${SECURITY:-${MIRROR%/debian}/debian-security}
echo "make-root: debootstrap bookworm from $MIRROR" >&2

debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 ||
  { tail -n 30 "$ROOT.log" >&2; echo "make-root: debootstrap failed; log: $ROOT.log" >&2; exit 1; }

# Never start services while installing packages (as Docker's official Debian images).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# No recommends, no package caches or lists left in image layers, no docs.
cat >"$ROOT/etc/apt/apt.conf.d/90pwt-ci" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/90pwt-ci-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
EOF
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/log/*.log \
  "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT/etc/hostname"
echo "make-root: $(du -sh "$ROOT" | cut -f1) in $ROOT" >&2
