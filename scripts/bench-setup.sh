#!/usr/bin/env bash
# Installs the peers benchmarks/store.py compares against (InfluxDB 1.6, VictoriaMetrics 1.79).
# Their packaged services are not used: the benchmark starts them on loopback with scratch data.
set -euo pipefail
PEERS=(influxdb victoria-metrics)
missing=()
for p in "${PEERS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Stop the packaged services if the install started them: they would hold the default ports.
for s in influxdb victoria-metrics; do $sudo systemctl stop "$s" 2>/dev/null || $sudo service "$s" stop 2>/dev/null || true; done
