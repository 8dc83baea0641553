#!/usr/bin/env bash
# Installs, on Debian/Ubuntu, only the system packages Loupe needs that this machine lacks: make, Node.js with npm
# (asl-validator and the browser library), mosquitto (the local MQTT broker) and chromium (the console's browser
# tests). Python 3.11 is not installed here (pyenv or your distribution; `make setup` says what is missing).
#
# Node.js: a machine whose nodejs comes from NodeSource already has npm inside that package, and Debian's `npm`
# package conflicts with it, so apt-get would refuse the whole line. npm is installed only when node is absent, or
# when the nodejs present is Debian's own (which ships without npm).
#
#   scripts/install_prereqs.sh            install what is missing (as root, or through sudo)
#   scripts/install_prereqs.sh --dry-run  print the apt-get command and install nothing
set -euo pipefail
dry_run=0
[[ "${1:-}" == "--dry-run" ]] && dry_run=1
have() { command -v "$1" >/dev/null 2>&1; }
packages=()
have make || packages+=(make)
if ! have node && ! have nodejs; then
  packages+=(nodejs)
  have npm || packages+=(npm)
elif ! have npm; then
  version="$(dpkg-query -W -f='${Version}' nodejs 2>/dev/null || true)"
  if [[ "$version" == *nodesource* ]]; then
    echo "npm is missing, but this nodejs ($version) comes from NodeSource, whose package ships npm: reinstall it" \
      "(apt-get install --reinstall nodejs) rather than Debian's npm, which conflicts with it" >&2
    exit 1
  fi
  packages+=(npm)
fi
have mosquitto || packages+=(mosquitto)
have chromium || have chromium-browser || packages+=(chromium)
if [[ ${#packages[@]} -eq 0 ]]; then
  echo "prerequisites: nothing to install (make, node, npm, mosquitto, chromium are present)"
  exit 0
fi
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  have sudo || { echo "run as root, or install sudo: apt-get install ${packages[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "prerequisites: installing ${packages[*]}"
if [[ $dry_run -eq 1 ]]; then
  echo "${sudo[*]:+${sudo[*]} }apt-get update -qq && ${sudo[*]:+${sudo[*]} }apt-get install -y -qq ${packages[*]}"
  exit 0
fi
have apt-get || { echo "no apt-get here: install ${packages[*]} with your system's package manager" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
