#!/usr/bin/env bash
# Enrolls one certificate with the real certmonger daemon, which runs its scep-submit helper
# (GET PKIOperation, AES-256, SHA-256 when GetCACaps lists AES and SHA-256).
#
# usage: certmonger_enroll.sh URL CHALLENGE CN OUTDIR CA_PEM [MODE [SCEP_FCGI CONFIG]]
#   MODE enroll (default): one enrollment.
#   MODE renew: enroll, keep OUTDIR/cert-first.pem, then `getcert resubmit`: with `Renewal` in
#     GetCACaps certmonger signs the new request with the old certificate.
#   MODE pending: the server holds the request (issue.approval = manual); once certmonger shows
#     CA_WORKING (OUTDIR/list-pending.log) the request is approved with `SCEP_FCGI ca approve
#     --config CONFIG` and `getcert refresh` makes certmonger poll (CertPoll) for it.
# The daemon runs in a private D-Bus session with all state under OUTDIR/state, so nothing of
# the system's certmonger is touched. Exit 0 when the certificate was issued (OUTDIR/cert.pem).
set -euo pipefail
url=$1 challenge=$2 cn=$3 out=$(realpath -m "$4") ca=$(realpath "$5") mode=${6:-enroll} scepfcgi=${7:-} config=${8:-}
rm -rf "$out/state"
mkdir -p "$out/state"/{requests,cas,local,tmp}
# certmonger runs the -c command after clearenv(): pass parameters through a file.
cat > "$out/state/params" <<PARAMS
URL='$url'
CHALLENGE='$challenge'
CN='$cn'
OUT='$out'
CA='$ca'
MODE='$mode'
SCEPFCGI='$scepfcgi'
CONFIG='$config'
PARAMS
cat > "$out/state/inner.sh" <<'INNER'
#!/bin/bash
set -u
. "$(dirname "$0")/params"
status() { getcert list -s -i scepreq | sed -n 's/^[[:space:]]*status: //p'; }
# Waits until the request reaches an end state (or $1, when given).
settle() {
  for _ in $(seq 160); do
    state=$(status)
    case "$state" in MONITORING|CA_REJECTED|CA_UNREACHABLE|NEED_GUIDANCE|${1:-MONITORING}) return ;; esac
    sleep 0.5
  done
}
serial() { openssl x509 -in "$OUT/cert.pem" -noout -serial 2>/dev/null; }
getcert add-scep-ca -s -c scepfcgi -u "$URL" -N "$CA" || exit 10
if [ "$MODE" = pending ]; then
  getcert request -s -c scepfcgi -I scepreq -f "$OUT/cert.pem" -k "$OUT/key.pem" -N "CN=$CN" -L "$CHALLENGE" -v \
    > "$OUT/request.log" 2>&1
  settle CA_WORKING
  getcert list -s > "$OUT/list-pending.log" 2>&1
  tid=$("$SCEPFCGI" ca pending --config "$CONFIG" | awk -F '\t' -v s="CN=$CN" '$4 == s { print $1 }' | head -1)
  "$SCEPFCGI" ca approve --config "$CONFIG" "$tid" >> "$OUT/request.log" 2>&1
  getcert refresh -s -i scepreq >> "$OUT/request.log" 2>&1
  settle
else
  getcert request -s -c scepfcgi -I scepreq -f "$OUT/cert.pem" -k "$OUT/key.pem" -N "CN=$CN" -L "$CHALLENGE" -w -v \
    > "$OUT/request.log" 2>&1
  # "-w" can return while the request still waits for the CA's data (CA_UNCONFIGURED, seen when the
  # server is slow to answer GetCACaps/GetCACert, e.g. mod_fcgid spawning a process): poll until the
  # request reaches an end state.
  settle
fi
if [ "$MODE" = renew ] && [ "$(status)" = MONITORING ]; then
  cp "$OUT/cert.pem" "$OUT/cert-first.pem"
  first=$(serial)
  getcert resubmit -s -i scepreq >> "$OUT/request.log" 2>&1
  for _ in $(seq 160); do
    [ "$(serial)" != "$first" ] && [ "$(status)" = MONITORING ] && break
    sleep 0.5
  done
fi
getcert list -s > "$OUT/list.log" 2>&1
INNER
chmod +x "$out/state/inner.sh"
export CERTMONGER_REQUESTS_DIR="$out/state/requests" CERTMONGER_CAS_DIR="$out/state/cas" \
  CERTMONGER_LOCAL_CA_DIR="$out/state/local" CERTMONGER_TMPDIR="$out/state/tmp" \
  CERTMONGER_CONFIG_DIR="$out/state"
timeout 90 dbus-run-session -- certmonger -s -n -c "$out/state/inner.sh" > "$out/daemon.log" 2>&1 || true
if [ "$mode" = renew ] && cmp -s "$out/cert.pem" "$out/cert-first.pem"; then
  echo "status: not renewed"
  exit 3
fi
if [ -s "$out/cert.pem" ] && grep -q "MONITORING" "$out/list.log"; then
  echo "status: SUCCESS"
  exit 0
fi
echo "status: not issued"
grep -E "status|stuck|ca-error" "$out/list.log" 2>/dev/null || true
exit 2
