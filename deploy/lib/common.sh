# Shared helpers of install-pi.sh and install-server.sh (sourced, not run).
# Everything works under $PREFIX ("" = the real system), so the installers can be tested in a
# throwaway directory and used to prepare a mounted image.

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# Seed an empty throwaway prefix with the account files useradd/groupadd --prefix need.
seed_accounts() {
  [ -n "$PREFIX" ] || return 0
  mkdir -p "$PREFIX/etc"
  [ -e "$PREFIX/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\n' >"$PREFIX/etc/passwd"
  [ -e "$PREFIX/etc/group" ] || printf 'root:x:0:\n' >"$PREFIX/etc/group"
  [ -e "$PREFIX/etc/shadow" ] || { printf 'root:*:19000:0:99999:7:::\n' >"$PREFIX/etc/shadow"; chmod 0640 "$PREFIX/etc/shadow"; }
  [ -e "$PREFIX/etc/gshadow" ] || { printf 'root:*::\n' >"$PREFIX/etc/gshadow"; chmod 0640 "$PREFIX/etc/gshadow"; }
}

prefix_args() { if [ -n "$PREFIX" ]; then printf -- '--prefix\n%s\n' "$PREFIX"; fi; }

has_group() { grep -q "^$1:" "$PREFIX/etc/group"; }
has_user() { grep -q "^$1:" "$PREFIX/etc/passwd"; }
user_field() { awk -F: -v u="$1" -v f="$2" '$1 == u { print $f }' "$PREFIX/etc/passwd"; }
in_group() { awk -F: -v g="$1" -v u="$2" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) found = 1 } END { exit !found }' "$PREFIX/etc/group"; }

ensure_group() {
  local group=$1
  if has_group "$group"; then return 0; fi
  mapfile -t pa < <(prefix_args)
  groupadd "${pa[@]}" --system "$group"
  say "created group $group"
}

# ensure_user NAME HOME [GROUP...]: a system user with no login, in the given groups.
ensure_user() {
  local user=$1 home=$2; shift 2
  local group
  mapfile -t pa < <(prefix_args)
  for group in "$@"; do ensure_group "$group"; done
  if ! has_user "$user"; then
    useradd "${pa[@]}" --system --no-create-home --home-dir "$home" \
      --shell /usr/sbin/nologin --user-group "$user"
    say "created system user $user"
  fi
  for group in "$@"; do
    if ! in_group "$group" "$user"; then
      usermod "${pa[@]}" --append --groups "$group" "$user"
      say "added $user to group $group"
    fi
  done
}

# install_file SRC DEST MODE: copy only when different, so a second run changes nothing.
install_file() {
  local src=$1 dest=$2 mode=$3
  mkdir -p "$(dirname "$dest")"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    chmod "$mode" "$dest"
    return 0
  fi
  install -m "$mode" "$src" "$dest"
  say "installed ${dest#"$PREFIX"}"
}

ensure_dir() {
  local dir=$1 mode=$2 owner=${3:-}
  mkdir -p "$dir"
  chmod "$mode" "$dir"
  if [ -n "$owner" ] && [ "$(id -u)" = 0 ]; then
    chown "$(user_field "$owner" 3):$(user_field "$owner" 4)" "$dir"
  fi
}

ensure_symlink() {
  local target=$1 link=$2
  mkdir -p "$(dirname "$link")"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then return 0; fi
  ln -sfn "$target" "$link"
  say "linked ${link#"$PREFIX"} -> $target"
}

systemd_running() { [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; }

# enable_unit UNIT: offline (systemctl --root) for a prefix, else through the running manager.
enable_unit() {
  local unit=$1
  if [ -n "$PREFIX" ]; then
    systemctl --root="$PREFIX" --quiet enable "$unit"
  elif systemd_running; then
    systemctl daemon-reload
    systemctl --quiet enable "$unit"
  else
    systemctl --quiet enable "$unit" 2>/dev/null ||
      die "cannot enable $unit: systemd is not running and systemctl could not do it offline"
  fi
}

# make_venv DIR SPEC: a venv with SPEC installed (re-running upgrades it in place).
make_venv() {
  local dir=$1 spec=$2; shift 2
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null || die "$python not found (apt-get install python3-venv)"
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$@" "$dir" || die "cannot create a venv at $dir (apt-get install python3-venv)"
    say "created venv $dir"
  fi
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  "$dir/bin/python" -m pip install --quiet --upgrade "$spec"
  say "installed $spec into $dir"
}
