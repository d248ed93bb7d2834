# shellcheck shell=bash
# Build prerequisites, shared by scripts/run, scripts/test and .ci/run
# (sourced, not run). On Debian, a missing tool is installed with apt-get
# (as root, or through sudo when it is there).
#
# The Rust build needs a C compiler (the bundled SQLite, zstd) and cmake
# (pingora-core turns on flate2's zlib-ng backend, whose build script runs
# cmake; no feature of pingora turns it off).

PREREQS_APT_UPDATED=${PREREQS_APT_UPDATED:-0}

prereqs_die() {
  echo "error: $*" >&2
  return 1
}

# Puts rustup's cargo on PATH when it is installed but not on PATH.
prereqs_cargo_path() {
  if [[ -d "${HOME:-/root}/.cargo/bin" ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
    export PATH
  fi
}

# apt_install PACKAGE...: apt-get update (once), then install.
apt_install() {
  local sudo=()
  if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
      prereqs_die "installing $* needs root: run as root or install sudo" || return 1
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 ||
    prereqs_die "apt-get not found: install $* with your system's package manager" || return 1
  if [[ $PREREQS_APT_UPDATED -eq 0 ]]; then
    "${sudo[@]}" apt-get update || return 1
    PREREQS_APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# ensure_pkg COMMAND PACKAGE: install the Debian PACKAGE when COMMAND is
# missing, then check that COMMAND is there.
ensure_pkg() {
  if command -v "$1" >/dev/null 2>&1; then
    return 0
  fi
  echo "'$1' not found: installing Debian package $2"
  apt_install "$2" || prereqs_die "could not install $2" || return 1
  hash -r
  command -v "$1" >/dev/null 2>&1 ||
    prereqs_die "'$1' still not found after installing $2" || return 1
}

# ensure_build_prereqs: everything `cargo build` of the workspace needs
# besides the Rust toolchain.
ensure_build_prereqs() {
  ensure_pkg cc gcc || return 1
  ensure_pkg cmake cmake || return 1
  command -v cargo >/dev/null 2>&1 ||
    prereqs_die "cargo not found: install the Rust toolchain (https://rustup.rs)" || return 1
}
