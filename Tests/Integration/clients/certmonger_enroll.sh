#!/usr/bin/env bash
# Enrolls one certificate with the real certmonger daemon, which runs its scep-submit helper
# (GET PKIOperation, AES-256, SHA-256 when GetCACaps lists AES and SHA-256).
#
# usage: certmonger_enroll.sh URL CHALLENGE CN OUTDIR CA_PEM
# The daemon runs in a private D-Bus session with all state under OUTDIR/state, so nothing of
# the system's certmonger is touched. Exit 0 when the certificate was issued (OUTDIR/cert.pem).
set -euo pipefail
url=$1 challenge=$2 cn=$3 out=$(realpath -m "$4") ca=$(realpath "$5")
rm -rf "$out/state"
mkdir -p "$out/state"/{requests,cas,local,tmp}
# certmonger runs the -c command after clearenv(): pass parameters through a file.
cat > "$out/state/params" <<PARAMS
URL='$url'
CHALLENGE='$challenge'
CN='$cn'
OUT='$out'
CA='$ca'
PARAMS
cat > "$out/state/inner.sh" <<'INNER'
#!/bin/bash
set -u
. "$(dirname "$0")/params"
getcert add-scep-ca -s -c scepfcgi -u "$URL" -N "$CA" || exit 10
getcert request -s -c scepfcgi -I scepreq -f "$OUT/cert.pem" -k "$OUT/key.pem" -N "CN=$CN" -L "$CHALLENGE" -w -v \
  > "$OUT/request.log" 2>&1
# "-w" can return while the request still waits for the CA's data (CA_UNCONFIGURED, seen when the
# server is slow to answer GetCACaps/GetCACert, e.g. mod_fcgid spawning a process): poll until the
# request reaches an end state.
for _ in $(seq 120); do
  state=$(getcert list -s -i scepreq | sed -n 's/^[[:space:]]*status: //p')
  case "$state" in MONITORING|CA_REJECTED|CA_UNREACHABLE|NEED_GUIDANCE) break ;; esac
  sleep 0.5
done
getcert list -s > "$OUT/list.log" 2>&1
INNER
chmod +x "$out/state/inner.sh"
export CERTMONGER_REQUESTS_DIR="$out/state/requests" CERTMONGER_CAS_DIR="$out/state/cas" \
  CERTMONGER_LOCAL_CA_DIR="$out/state/local" CERTMONGER_TMPDIR="$out/state/tmp" \
  CERTMONGER_CONFIG_DIR="$out/state"
timeout 90 dbus-run-session -- certmonger -s -n -c "$out/state/inner.sh" > "$out/daemon.log" 2>&1 || true
if [ -s "$out/cert.pem" ] && grep -q "MONITORING" "$out/list.log"; then
  echo "status: SUCCESS"
  exit 0
fi
echo "status: not issued"
grep -E "status|stuck|ca-error" "$out/list.log" 2>/dev/null || true
exit 2
