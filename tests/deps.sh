#!/usr/bin/env bash
# Installs what `make` needs and is missing: Debian -dev packages for the libraries, and the
# test tools. Quiet when everything is present, so `make test` can run it every time.
set -euo pipefail
need=()
pkgs=(gcc make pkg-config libcurl4-openssl-dev libjansson-dev libyaml-dev libwebsockets-dev
      libssl-dev libseccomp-dev zlib1g-dev openssl perl curl ca-certificates apparmor clang
      libclang-rt-14-dev procps psmisc iproute2 jq dpkg-dev binutils
      qemu-system-x86 busybox-static cpio lua5.1 lua-cjson clang-format cppcheck)
# The node of `make up` and the node suites (tests/cluster/node.sh): a private containerd with
# runc, the CNI plugins, iptables and ipset (kube-proxy, kube-router's firewall), column for the
# demo's table (busybox-static, above, goes into the runner-with-tools image).
pkgs+=(runc containernetworking-plugins iptables ipset bsdextrautils)
# The RunnerPool node suite builds a Debian image from Debian's packages (tests/cluster/pool-images.sh).
pkgs+=(debootstrap)
# Debian's containerd, unless Docker's containerd.io package (which conflicts with it) already
# provides /usr/bin/containerd; the node runs its own instance either way.
dpkg-query -W -f='${Status}' containerd.io 2>/dev/null | grep -q "install ok installed" || pkgs+=(containerd)
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}" >&2
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || {
	echo "deps: Go >= 1.24 is required to build the test control plane (https://go.dev/dl)" >&2; exit 1; }
