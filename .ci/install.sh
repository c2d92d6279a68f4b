#!/usr/bin/env bash
# Installs everything vsc-provider and its tests need on a fresh Debian machine (run as root):
# the real PKCS#11 clients from Debian, then the package (which builds the PKCS#11 library) into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential python3-venv ca-certificates sqlite3 xdg-utils desktop-file-utils
  softhsm2 opensc libengine-pkcs11-openssl gnutls-bin libnss3-tools
  openssh-client openssh-server openvpn p11-kit curl firefox-esr poppler-utils
  keyutils libkeyutils1 libtss2-dev swtpm swtpm-tools tpm2-tools strace postgresql
  pcscd vsmartcard-vpcd yubico-piv-tool
  fprintd libfprint-2-2 dbus-daemon python3-dbusmock
  systemd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# An editable install of the src/ layout is a plain path entry to src/ (no import hook that processes loading
# the module would run); the PKCS#11 library is built into src/vsc_provider at install time.
.venv/bin/python -m pip install -q -e '.[test]'
echo "installed: $(.venv/bin/vsc module path)"
# The test suites of the Python PKCS#11 libraries the tests use, from their source releases (the versions
# installed above), run unmodified against a compatible card by tests/e2e/test_upstream_suites.py.
upstream=.cache/upstream
if ! ls "$upstream"/python_pkcs11-*.tar.gz "$upstream"/pykcs11-*.tar.gz >/dev/null 2>&1; then
  mkdir -p "$upstream"
  pkcs11_v=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("python-pkcs11"))')
  pykcs11_v=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("PyKCS11"))')
  get=(.venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$upstream")
  "${get[@]}" "python-pkcs11==$pkcs11_v"
  # PyKCS11's isolated metadata step would build swig from source: the venv's setuptools and wheel do
  "${get[@]}" --no-build-isolation "PyKCS11==$pykcs11_v"
fi
# Byte-compile now: a host that loads the module as another user may not be able to write __pycache__, and
# compiling the sources again in every process would add tens of ms to each C_Initialize.
.venv/bin/python -m compileall -q src/vsc_provider >/dev/null
