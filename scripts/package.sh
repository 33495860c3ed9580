#!/usr/bin/env bash
# Builds the Debian package scep-fcgi_<version>_<arch>.deb with dpkg-deb from the static release
# build, into OUTDIR (default: ./dist). Prints the package path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
swift build -c release --static-swift-stdlib --product scep-fcgi >&2
binary=.build/release/scep-fcgi
version=$("$binary" --version | head -1 | awk '{print $2}')
arch=$(dpkg --print-architecture)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/bin/scep-fcgi"
install -D -m 0644 scep-fcgi.conf.example "$root/etc/scep-fcgi/scep-fcgi.conf"
install -D -m 0644 packaging/systemd/scep-fcgi.service "$root/lib/systemd/system/scep-fcgi.service"
install -D -m 0644 packaging/systemd/scep-fcgi.socket "$root/lib/systemd/system/scep-fcgi.socket"
install -D -m 0644 packaging/systemd/scep-fcgi-revocations.service "$root/lib/systemd/system/scep-fcgi-revocations.service"
install -D -m 0644 packaging/systemd/scep-fcgi-revocations.timer "$root/lib/systemd/system/scep-fcgi-revocations.timer"
install -D -m 0644 packaging/debian/sysusers.conf "$root/usr/lib/sysusers.d/scep-fcgi.conf"
install -D -m 0644 packaging/debian/tmpfiles.conf "$root/usr/lib/tmpfiles.d/scep-fcgi.conf"
install -D -m 0644 packaging/logrotate/scep-fcgi "$root/etc/logrotate.d/scep-fcgi"
for f in nginx/*.conf nginx/README.md; do install -D -m 0644 "$f" "$root/usr/share/scep-fcgi/$f"; done
for f in apache/*.conf apache/README.md; do install -D -m 0644 "$f" "$root/usr/share/scep-fcgi/$f"; done
# Apache's own place for drop-ins: "a2enconf scep-fcgi-proxy" (or scep-fcgi-fcgid) and the
# metrics and publish snippets. Conffiles, so local edits survive upgrades.
for f in apache/*.conf; do install -D -m 0644 "$f" "$root/etc/apache2/conf-available/$(basename "$f")"; done
install -D -m 0644 grafana/scep-fcgi-dashboard.json "$root/usr/share/scep-fcgi/grafana/scep-fcgi-dashboard.json"
for f in README.md CHANGELOG.md docs/*.md; do install -D -m 0644 "$f" "$root/usr/share/doc/scep-fcgi/$f"; done
install -D -m 0644 LICENSE "$root/usr/share/doc/scep-fcgi/copyright"

# The man page, generated from the ArgumentParser definitions.
man=$(mktemp -d)
swift package --allow-writing-to-directory "$man" generate-manual --output-directory "$man" >&2
install -D -m 0644 "$man/scep-fcgi.1" "$root/usr/share/man/man1/scep-fcgi.1"
gzip -9n "$root/usr/share/man/man1/scep-fcgi.1"
rm -rf "$man"

# Shell completions, from the same definitions.
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$binary" --generate-completion-script bash > "$root/usr/share/bash-completion/completions/scep-fcgi"
"$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_scep-fcgi"
"$binary" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/scep-fcgi.fish"

install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | awk '{print $1}')
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in > "$root/DEBIAN/control"
{ cat packaging/debian/conffiles; for f in apache/*.conf; do echo "/etc/apache2/conf-available/$(basename "$f")"; done; } > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"

mkdir -p "$out"
deb="$out/scep-fcgi_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >&2
echo "$deb"
