#!/usr/bin/env bash
# Quick start: nginx in front of scep-fcgi with a demo CA and a static challenge, on loopback,
# ending with a real enrollment by micromdm's scepclient checked with openssl.
#
#   scripts/demo.sh         set up, start, enroll; leaves nginx and scep-fcgi running
#   scripts/demo.sh stop    stop them
# Everything lives in ./demo (git-ignored). Needs root for apt and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=$repo/demo
port=${SCEP_DEMO_PORT:-8080}

stop() {
  [ -f "$demo/nginx.pid" ] && kill "$(cat "$demo/nginx.pid")" 2>/dev/null || true
  [ -f "$demo/scep-fcgi.pid" ] && kill "$(cat "$demo/scep-fcgi.pid")" 2>/dev/null || true
  rm -f "$demo/nginx.pid" "$demo/scep-fcgi.pid"
}
if [ "${1:-}" = "stop" ]; then stop; echo "stopped"; exit 0; fi

scripts/install-deps.sh
echo "== building scep-fcgi (release)"
swift build -c release --static-swift-stdlib --product scep-fcgi 2>&1 | tail -1
bin=$repo/.build/release/scep-fcgi

stop
mkdir -p "$demo/nginx-tmp" "$demo/clients"
chmod 755 "$demo"
if [ ! -f "$demo/ca/ca.pem" ]; then
  "$bin" ca init --dir "$demo/ca" --subject "CN=scep-fcgi Demo CA,O=scep-fcgi demo" --key-bits 2048 --days 365
fi
# The shared challenge lives in a file (never a flag); a random one per demo directory.
if [ ! -f "$demo/challenge" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$demo/challenge")
fi
cat > "$demo/scep-fcgi.conf" <<CONF
[ca]
dir = $demo/ca
[challenge]
mode = static
static_password_file = $demo/challenge
[issue]
validity_days = 365
[audit]
path = $demo/audit.jsonl
[server]
socket = $demo/scep-fcgi.sock
# nginx's workers run as an unprivileged user: let them connect.
socket_mode = 0666
CONF
"$bin" check --config "$demo/scep-fcgi.conf"
nohup "$bin" serve --config "$demo/scep-fcgi.conf" > "$demo/scep-fcgi.log" 2>&1 &
echo $! > "$demo/scep-fcgi.pid"
for _ in $(seq 50); do [ -S "$demo/scep-fcgi.sock" ] && break; sleep 0.1; done

cat > "$demo/nginx.conf" <<CONF
daemon on;
worker_processes 1;
pid $demo/nginx.pid;
error_log $demo/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $demo/nginx-access.log;
    client_body_temp_path $demo/nginx-tmp/body;
    fastcgi_temp_path $demo/nginx-tmp/fastcgi;
    proxy_temp_path $demo/nginx-tmp/proxy;
    uwsgi_temp_path $demo/nginx-tmp/uwsgi;
    scgi_temp_path $demo/nginx-tmp/scgi;
    upstream scep_fcgi { server unix:$demo/scep-fcgi.sock; }
    server {
        listen 127.0.0.1:$port;
        include $repo/nginx/scep-fcgi-locations.conf;
    }
}
CONF
nginx -c "$demo/nginx.conf" -e "$demo/nginx-error.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/scep?operation=GetCACaps" && break; sleep 0.1; done

url="http://127.0.0.1:$port/scep/pkiclient.exe"
echo "== GetCACaps"
curl -s "$url?operation=GetCACaps"; echo
echo "== enrolling with micromdm scepclient"
client=$(mktemp -d "$demo/clients/scepclient-XXXX")
(cd "$client" && scepclient -server-url "$url" -challenge "$(cat "$demo/challenge")" -cn "demo-device" \
   -private-key client.key -certificate client.pem 2>&1 | tail -2)
echo "== checking the certificate with openssl"
openssl verify -CAfile "$demo/ca/ca.pem" "$client/client.pem"
openssl x509 -in "$client/client.pem" -noout -subject -issuer -serial -enddate
echo "== the audit log (tail -f $demo/audit.jsonl | jq)"
tail -n 3 "$demo/audit.jsonl"
cat <<DONE

scep-fcgi is serving SCEP at $url
  CA certificate: $demo/ca/ca.pem    challenge: $demo/challenge
  stop with: scripts/demo.sh stop
DONE
