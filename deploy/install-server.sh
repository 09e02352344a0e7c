#!/usr/bin/env bash
# Install the IoT Center server (Flask under gunicorn) as a systemd service. Idempotent.
set -euo pipefail
PROG=install-server.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=deploy/lib/common.sh
. "$HERE/lib/common.sh"

usage() {
  cat <<USAGE
Usage: $PROG [options]

Installs on this host (run as root; running it again changes nothing and never touches an
existing configuration):
  - the system user iot-center;
  - the web assets (npm ci && npm run build) when package.json exists and node is present;
  - a Python venv at /opt/iot-center with this project and its 'server' extra;
  - /etc/iot-center/config.ini from deploy/config.ini.example with a generated SECRET_KEY
    (mode 0640, group iot-center), only if it does not exist yet;
  - the systemd unit iot-center.service, enabled (started with --start).

Then: edit /etc/iot-center/config.ini (INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG, ENROLLMENT_TOKEN),
run  IOT_CENTER_CONFIG=/etc/iot-center/config.ini /opt/iot-center/bin/iot-center setup
and  systemctl start iot-center.  It listens on 127.0.0.1:5000; put a TLS proxy in front.

Options:
  --prefix DIR   install under DIR instead of / (testing, images); units enabled offline
  --source SPEC  what pip installs (default: this checkout, $REPO)
  --no-venv      skip the venv
  --no-assets    skip npm even when node is present
  --start        start (or restart) iot-center.service now
  -h, --help     this text
USAGE
}

PREFIX=""
SOURCE=""
VENV=1
ASSETS=1
START=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --source) SOURCE=${2:?--source needs a pip requirement}; shift 2 ;;
    --no-venv) VENV=0; shift ;;
    --no-assets) ASSETS=0; shift ;;
    --start) START=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
if [ -n "$PREFIX" ]; then
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  [ "$PREFIX" != / ] || PREFIX=""
fi
[ "$(id -u)" = 0 ] || die "run as root (sudo $PROG)"

seed_accounts
ensure_user iot-center /nonexistent

# Web assets first: a non-editable pip install copies iot_center/static as it is then.
if [ "$ASSETS" = 1 ] && [ -z "$SOURCE" ] && [ -f "$REPO/package.json" ]; then
  if command -v npm >/dev/null; then
    say "building web assets with npm"
    (cd "$REPO" && npm ci --no-audit --no-fund --loglevel=error && npm run --if-present build) ||
      die "npm failed (run it by hand in $REPO, or use --no-assets)"
  else
    say "node/npm not found: using the assets as they are in the checkout"
  fi
fi

if [ "$VENV" = 1 ]; then
  make_venv "$PREFIX/opt/iot-center" "${SOURCE:-$REPO}[server]"
else
  say "skipping the venv (--no-venv)"
fi

# The configuration: created once, never overwritten (it holds the operator's settings).
ensure_dir "$PREFIX/etc/iot-center" 0750
CONFIG="$PREFIX/etc/iot-center/config.ini"
if [ ! -e "$CONFIG" ]; then
  secret=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 48)
  tmp=$(mktemp "$PREFIX/etc/iot-center/.config.XXXXXX")
  sed "s|^SECRET_KEY = .*|SECRET_KEY = $secret|" "$HERE/config.ini.example" >"$tmp"
  chmod 0640 "$tmp"
  mv "$tmp" "$CONFIG"
  say "wrote ${CONFIG#"$PREFIX"} with a new SECRET_KEY: fill in INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG, ENROLLMENT_TOKEN"
else
  say "keeping ${CONFIG#"$PREFIX"}"
fi
gid=$(awk -F: '$1 == "iot-center" { print $3 }' "$PREFIX/etc/group")
chown "0:$gid" "$PREFIX/etc/iot-center" "$CONFIG"
chmod 0640 "$CONFIG"

install_file "$HERE/systemd/iot-center.service" "$PREFIX/etc/systemd/system/iot-center.service" 0644
enable_unit iot-center.service
say "iot-center.service enabled"
if [ "$START" = 1 ]; then
  if systemd_running; then
    systemctl restart iot-center.service
    say "iot-center.service (re)started: journalctl -u iot-center -f"
  else
    say "not starting: systemd is not running here"
  fi
fi
say "done"
