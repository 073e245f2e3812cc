#!/usr/bin/env bash
# make deps: install the Debian packages the build, tests and demo need.
# Runs apt-get update only when something is missing; does nothing when
# everything is present.
set -eu
pkgs="build-essential pkg-config libwslay-dev libmbedtls-dev libjansson-dev
libcurl4-openssl-dev libinih-dev libmicrohttpd-dev python3 python3-websockets openssl
nginx-light clang clang-format valgrind curl"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all packages present"
	exit 0
fi
echo "deps: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: not root; run as root: apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
