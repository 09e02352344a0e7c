#!/usr/bin/env bash
# Install the IoT Center agent and first-boot provisioning on a Raspberry Pi. Idempotent.
set -euo pipefail
PROG=install-pi.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=deploy/lib/common.sh
. "$HERE/lib/common.sh"

usage() {
  cat <<USAGE
Usage: $PROG [options]

Installs on this Raspberry Pi (run as root; running it again changes nothing):
  - the system user iot-agent, in the groups i2c and gpio (created if missing);
  - a Python venv at /opt/iot-agent with this project and its 'pi' extra
    (commands linked into /usr/local/bin: iot-agent, iot-provision);
  - the systemd units iot-agent.service and iot-provision.service;
  - /etc/iot-agent and /var/lib/iot-agent;
  - enables iot-provision.service, which registers the device at the next boot (or now,
    with --start) and then enables the agent.

Options:
  --prefix DIR        install under DIR instead of / (a mounted image, or a throwaway
                      directory for testing); units are enabled offline (systemctl --root)
  --source SPEC       what pip installs (default: this checkout, $REPO);
                      e.g. a wheel: /boot/firmware/iot-center/iot_center-0.1.0-py3-none-any.whl
  --no-venv           skip the venv (tests, or when /opt/iot-agent is managed otherwise)
  --no-apt            do not apt-get install the OS packages (python3-venv, i2c-tools, lgpio)
  --url URL           write the boot config with this IoT Center URL ...
  --enrollment-token T  ... and this enrollment token (both needed; an existing boot config
                      is kept unless both are given)
  --start             start provisioning now instead of at the next boot
  -h, --help          this text

Afterwards: journalctl -u iot-provision -f   (provisioning), journalctl -u iot-agent -f
USAGE
}

PREFIX=""
SOURCE=""
VENV=1
APT=1
URL=""
TOKEN=""
START=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --source) SOURCE=${2:?--source needs a pip requirement}; shift 2 ;;
    --no-venv) VENV=0; shift ;;
    --no-apt) APT=0; shift ;;
    --url) URL=${2:?}; shift 2 ;;
    --enrollment-token) TOKEN=${2:?}; shift 2 ;;
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
if [ -n "$URL$TOKEN" ] && { [ -z "$URL" ] || [ -z "$TOKEN" ]; }; then
  die "--url and --enrollment-token go together"
fi

# 1. OS packages (only on the real system): venv support, i2cdetect, lgpio for gpiozero/Blinka.
if [ "$APT" = 1 ] && [ -z "$PREFIX" ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in python3-venv python3-pip i2c-tools python3-lgpio; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
      die "apt-get install ${missing[*]} failed"
  fi
fi

# 2. The service user, allowed to use /dev/i2c-* (group i2c) and /dev/gpiochip* (group gpio).
seed_accounts
ensure_user iot-agent /var/lib/iot-agent i2c gpio

# 3. The venv. --system-site-packages lets it use the OS's lgpio (no compiler needed).
if [ "$VENV" = 1 ]; then
  make_venv "$PREFIX/opt/iot-agent" "${SOURCE:-$REPO}[pi]" --system-site-packages
else
  say "skipping the venv (--no-venv)"
fi
ensure_symlink /opt/iot-agent/bin/iot-agent "$PREFIX/usr/local/bin/iot-agent"
ensure_symlink /opt/iot-agent/bin/iot-provision "$PREFIX/usr/local/bin/iot-provision"

# 4. Directories (systemd creates them too; here so that the tree is complete at once).
ensure_dir "$PREFIX/etc/iot-agent" 0755
ensure_dir "$PREFIX/var/lib/iot-agent" 0750 iot-agent

# 5. The boot config, when asked (cloud-init and firstrun.sh place their own).
if [ -n "$URL" ]; then
  if [ -d "$PREFIX/boot/firmware" ]; then BOOT="$PREFIX/boot/firmware"; else BOOT="$PREFIX/boot"; fi
  mkdir -p "$BOOT"
  tmp=$(mktemp)
  printf '[iot-center]\nurl = %s\nenrollment_token = %s\n' "$URL" "$TOKEN" >"$tmp"
  install_file "$tmp" "$BOOT/iot-center.ini" 0600
  rm -f "$tmp"
fi

# 6. Units, enabled offline or through the running systemd.
install_file "$HERE/systemd/iot-agent.service" "$PREFIX/etc/systemd/system/iot-agent.service" 0644
install_file "$HERE/systemd/iot-provision.service" "$PREFIX/etc/systemd/system/iot-provision.service" 0644
enable_unit iot-provision.service
say "iot-provision.service enabled"

if [ "$START" = 1 ]; then
  if systemd_running; then
    # --no-block: this may run from cloud-init, before network-online.target is reached.
    systemctl start --no-block iot-provision.service
    say "provisioning started: journalctl -u iot-provision -f"
  else
    say "not starting provisioning: systemd is not running here (it runs at the next boot)"
  fi
fi
say "done"
