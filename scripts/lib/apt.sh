# Sourced by the scripts that need Debian packages: one way to install them.
#   apt_install PACKAGE...      install, as root or through sudo; refreshes the package lists
#                               when the first try fails; elsewhere says what to install.
#   need_command COMMAND PACKAGE  apt_install PACKAGE unless COMMAND is on the PATH.

apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "error: install $* (Debian packages) first, or run this as root" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "error: install $* first (this is not a Debian system: no apt-get)" >&2
    exit 1
  fi
  echo "==> installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
  }
}

need_command() {
  command -v "$1" >/dev/null || apt_install "$2"
}
