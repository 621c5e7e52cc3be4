#!/bin/sh
# Builds compat/sarama/main.go against Debian's Sarama 1.22 (GOPATH mode, no network) and runs it against a
# running broker: compat/sarama.sh [bootstrap]. Exit 2 when Go or Sarama is missing; see compat/README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/Shopify/sarama ]; then
    echo "compat/sarama.sh: needs golang-go and golang-github-shopify-sarama-dev (apt-get install ...)" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/saramacompat"
cp "$here/sarama/main.go" "$work/src/saramacompat/"
# Debian's Go packages are a GOPATH tree; the DataDog/zstd cgo warnings are harmless.
(cd "$work/src/saramacompat" && GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="${GOCACHE:-$work/cache}" \
    go build -o "$work/sarama-compat" . 2>"$work/build.log") || { cat "$work/build.log" >&2; exit 2; }
"$work/sarama-compat" "${1:-127.0.0.1:9092}"
