#!/usr/bin/env bash
# Debian packages the tests talk to (DICOM peers nobody here wrote). Installed once, if missing.
# `scripts/system-packages.sh bench` also installs what the benchmarks drive (wrk).
set -euo pipefail
need=()
command -v echoscu >/dev/null 2>&1 || need+=(dcmtk)
[ -x /usr/bin/chromium ] || need+=(chromium)   # browser journeys (Playwright drives the Debian build)
# the report PDF (WeasyPrint) lays text out with Pango, in DejaVu fonts
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || need+=(libpango-1.0-0 libpangoft2-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libharfbuzz-subset.so.0' || need+=(libharfbuzz-subset0)  # font subsetting (else fontTools, slower)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
if [ "${1:-}" = "bench" ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "system-packages: installation de ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
