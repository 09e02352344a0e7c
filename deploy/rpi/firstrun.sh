#!/bin/bash
# First boot of an older Raspberry Pi OS image (before cloud-init): run once by the kernel
# command line, before the network is up. Put on the boot partition:
#   firstrun.sh                   this file
#   iot-center.ini                [iot-center] url = ..., enrollment_token = ... (see hardware.md)
#   iot-center/deploy/            a copy of this project's deploy/ folder
#   iot-center/iot_center-*.whl   the project's wheel: python3 -m pip wheel --no-deps -w dist .
# and append to the single line of cmdline.txt:
#   systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
# (/boot/firmware/firstrun.sh on Bookworm). It enables I2C, arranges for the installer to run
# once the network is up (iot-install.service, next boot), removes itself and reboots.
set -u
# FIRSTRUN_ROOT: a directory standing for / (tests only); empty on a real first boot.
ROOT=${FIRSTRUN_ROOT:-}
BOOT_DIR=/boot/firmware
[ -f "$ROOT$BOOT_DIR/cmdline.txt" ] || BOOT_DIR=/boot
BOOT=$ROOT$BOOT_DIR
log() { echo "firstrun: $*" | tee -a "$BOOT/iot-center-firstrun.log"; }

# 1. I2C on (the BME280 is on bus 1).
if [ -z "$ROOT" ] && command -v raspi-config >/dev/null; then
  raspi-config nonint do_i2c 0 && log "I2C enabled"
else
  grep -qs '^dtparam=i2c_arm=on' "$BOOT/config.txt" || echo 'dtparam=i2c_arm=on' >>"$BOOT/config.txt"
  mkdir -p "$ROOT/etc"
  grep -qs '^i2c-dev' "$ROOT/etc/modules" || echo 'i2c-dev' >>"$ROOT/etc/modules"
  log "I2C enabled in config.txt"
fi

# 2. The provisioning settings: a template when the person did not place one.
if [ ! -f "$BOOT/iot-center.ini" ]; then
  cat >"$BOOT/iot-center.ini" <<'INI'
[iot-center]
url = REPLACE_ME_WITH_THE_IOT_CENTER_URL
enrollment_token = REPLACE_ME_WITH_THE_ENROLLMENT_TOKEN
device_id_prefix = pi-
INI
  log "no iot-center.ini: wrote a template to $BOOT/iot-center.ini; fill it in and reboot"
fi

# 3. Install when the network is up: a one-time unit that removes itself on success.
#    In the unit, $$ is a literal $ for the shell (systemd expands $NAME itself).
SRC="$BOOT_DIR/iot-center"
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
cat >"$ROOT/etc/systemd/system/iot-install.service" <<UNIT
[Unit]
Description=Install the IoT Center agent (first boot, once)
Wants=network-online.target
After=network-online.target
ConditionPathExists=!/etc/systemd/system/iot-provision.service
StartLimitIntervalSec=0

[Service]
Type=oneshot
ExecStart=/bin/bash -c 'wheel=\$\$(ls $SRC/iot_center-*.whl | sort -V | tail -n 1) && exec /bin/bash $SRC/deploy/install-pi.sh --source "\$\$wheel" --start'
ExecStartPost=/bin/systemctl disable iot-install.service
Restart=on-failure
RestartSec=60
TimeoutStartSec=infinity
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/iot-install.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/iot-install.service"
log "iot-install.service will install the agent after the reboot"

# 4. Never again: remove this script and its kernel command line arguments.
rm -f "$BOOT/firstrun.sh"
sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
exit 0
