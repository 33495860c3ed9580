#!/usr/bin/env bash
# Installs what building, running and testing scep-fcgi needs on Debian 12 (idempotent).
# The C libraries are fixed by design: libfcgi, OpenSSL 3, libcurl; libpq for the PostgreSQL store.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  pkg-config libfcgi-dev libfcgi-bin libssl-dev libcurl4-openssl-dev openssl   # build and run
  nginx apache2 libapache2-mod-fcgid                                          # web front ends
  scep certmonger dbus curl                                                   # real SCEP clients
  logrotate procps systemd adduser                                            # log rotation, socket activation, the .deb
  iproute2 strace                                                             # ss (kept-alive connections in test_connections.py), bench/ab.py --syncs
  prometheus                                                                  # promtool and a Prometheus server for the metrics tests
  softhsm2 opensc libengine-pkcs11-openssl                                    # the CA key on a PKCS#11 token (SoftHSM2 in the tests)
  freeradius eapoltest                                                        # EAP-TLS with OCSP (docs/eap-tls.md)
  libpq-dev postgresql                                                        # the PostgreSQL store and the server its tests start
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# PyScep (import name "scep") and the libraries it imports (its wheel declares no dependencies);
# cryptography for the Intune mock and the crafted corpus (Tests/Integration/scepcraft.py).
if ! python3 -c "import scep, asn1crypto, oscrypto, csrbuilder, certbuilder, cryptography, pytest" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore pyscep asn1crypto oscrypto csrbuilder certbuilder cryptography pytest
fi
