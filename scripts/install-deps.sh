#!/usr/bin/env bash
# Installs the Debian packages Trine's builds, tests and network commands
# need, when something is missing (as root). Used by `make deps` (and so
# `make demo`) and by CI. Says what it installs.
#   build-essential, pkg-config: ring and libfuzzer-sys build C code
#   iproute2 (ip, tc), nftables (nft): namespaces, routes, firewalls
#   conntrack: an exit deletes a released NAT pool address's kernel
#     flows before reusing it (and its tests watch that)
#   iputils-ping: the end-to-end tests ping through the tunnel
#   iptables: the test network's link delay and loss (NFQUEUE, statistic)
#   xvfb, xauth, libgl1-mesa-dri, libgl1, libegl1: the desktop app's
#     end-to-end run on a virtual display with software OpenGL
#   dbus-daemon: the tray icon's test runs a private session bus
#   fonts-dejavu-core: the text of trine-sim's figures (DejaVu Sans)
#   time: /usr/bin/time, wall time and peak memory in `make sim-bench`
# With the argument `bench`, also what `make bench-net` measures with:
#   iperf3, wireguard-go + wireguard-tools (the WireGuard baselines) and
#   tor (the Tor baseline: a private Tor network)
set -euo pipefail
packages=(build-essential pkg-config ca-certificates iproute2 nftables conntrack iputils-ping iptables
    xvfb xauth libgl1-mesa-dri libgl1 libegl1 dbus-daemon fonts-dejavu-core time)
if [ "${1:-}" = bench ]; then
    packages+=(iperf3 wireguard-go wireguard-tools tor)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing ${missing[*]} (apt-get, as root)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
