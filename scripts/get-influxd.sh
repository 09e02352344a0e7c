#!/usr/bin/env bash
# Print the path of a ready influxd 2.x binary, building InfluxDB OSS from source if needed.
#
# Order: $INFLUXD if set; `influxd` on PATH if it is 2.x; the cached build under
# $IOT_CACHE_DIR (default ~/.cache/iot-center); otherwise build v$INFLUXDB_VERSION from the
# Go module proxy, with cargo building flux's Rust part (libflux). Progress goes to stderr,
# the full build log to $CACHE/build-<version>.log; only the binary path goes to stdout.
set -euo pipefail

INFLUXDB_VERSION="${INFLUXDB_VERSION:-2.9.1}"
CACHE="${IOT_CACHE_DIR:-$HOME/.cache/iot-center}"
TARGET="$CACHE/influxd-$INFLUXDB_VERSION/influxd"
LOG="$CACHE/build-$INFLUXDB_VERSION.log"

say() { printf '[influxd] %s\n' "$*" >&2; }

is_v2() { "$1" version 2>/dev/null | grep -qE 'InfluxDB v?2\.'; }

if [ -n "${INFLUXD:-}" ]; then
  if is_v2 "$INFLUXD"; then echo "$INFLUXD"; exit 0; fi
  say "INFLUXD=$INFLUXD is not an InfluxDB 2.x binary"; exit 1
fi
if command -v influxd >/dev/null 2>&1 && is_v2 "$(command -v influxd)"; then
  command -v influxd; exit 0
fi
if [ -x "$TARGET" ] && is_v2 "$TARGET"; then echo "$TARGET"; exit 0; fi

for tool in go cargo gcc; do
  command -v "$tool" >/dev/null 2>&1 || { say "building InfluxDB needs '$tool' on PATH"; exit 1; }
done

mkdir -p "$CACHE"
WORK="$CACHE/build-$INFLUXDB_VERSION"
: >"$LOG"
START=$(date +%s)
STEP=""
trap 'rc=$?; if [ $rc -ne 0 ]; then say "FAILED at step: $STEP (exit $rc)"; say "log: $LOG"; tail -n 25 "$LOG" >&2; fi' EXIT

step() { STEP="$1"; say "$(printf '%4ss' $(( $(date +%s) - START ))) $1"; echo "=== $1" >>"$LOG"; }

say "no cached influxd; building InfluxDB OSS v$INFLUXDB_VERSION (15-40 min on 2 cores, log: $LOG)"

step "1/5 download github.com/influxdata/influxdb/v2@v$INFLUXDB_VERSION from the Go module proxy"
mkdir -p "$WORK"
MODDIR=$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/influxdata/influxdb/v2@v$INFLUXDB_VERSION" 2>>"$LOG" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$MODDIR" ] || { echo "module directory not found" >>"$LOG"; exit 1; }

step "2/5 copy the sources to a writable build tree ($WORK/src)"
# Building inside influxdb's own module keeps its go.mod replace lines in force
# (`go install pkg@version` refuses modules that have them).
rm -rf "$WORK/src"
cp -r "$MODDIR" "$WORK/src"
chmod -R u+w "$WORK/src"
cd "$WORK/src"

step "3/5 build influxdata/pkg-config (finds and builds libflux for cgo)"
go build -o "$WORK/bin/pkg-config" github.com/influxdata/pkg-config >>"$LOG" 2>&1

# flux pins an old Rust in rust-toolchain.toml (rustup must not try to download it) and
# turns every warning into an error under its `strict` feature; newer compilers add lints,
# so cap lints at warn for the crates cargo compiles.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"
export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints=warn"
export PKG_CONFIG="$WORK/bin/pkg-config"
export CGO_ENABLED=1

step "4/5 download Go dependencies"
go mod download >>"$LOG" 2>&1

step "5/5 compile libflux (Rust) and influxd (Go) -- the long part"
(
  go build -v -tags 'sqlite_foreign_keys,sqlite_json' \
    -ldflags "-s -w -X main.version=v$INFLUXDB_VERSION -X main.commit=release -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -o "$WORK/influxd" ./cmd/influxd >>"$LOG" 2>&1
) &
BUILD_PID=$!
while kill -0 "$BUILD_PID" 2>/dev/null; do
  sleep 30
  kill -0 "$BUILD_PID" 2>/dev/null || break
  say "$(printf '%4ss' $(( $(date +%s) - START ))) still compiling... last: $(tail -n 1 "$LOG" | cut -c1-100)"
done
wait "$BUILD_PID"

is_v2 "$WORK/influxd" || { echo "built binary does not report InfluxDB 2.x" >>"$LOG"; STEP="verify"; exit 1; }
mkdir -p "$(dirname "$TARGET")"
mv "$WORK/influxd" "$TARGET"
STEP="done"
say "$(printf '%4ss' $(( $(date +%s) - START ))) built $("$TARGET" version) -> $TARGET"
say "build tree kept at $WORK (delete it to reclaim disk; the binary is all that is needed)"
echo "$TARGET"
