# Sourced by setup.sh, test.sh and demo.sh: choose the Python that unbacked is installed into,
# without touching the system Python a distribution manages.
#
#   $PYTHON given                      : that interpreter (a CI image, a developer's choice)
#   inside an active venv              : that venv
#   a system Python marked EXTERNALLY-MANAGED (PEP 668; Debian 12+), or not root:
#                                        the project venv .venv (created by setup.sh)
#   otherwise (root, an unmanaged Python such as a CI toolchain's): python3 as it is
choose_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if [ -n "${VIRTUAL_ENV:-}" ]; then echo "$VIRTUAL_ENV/bin/python"; return; fi
  if [ -x .venv/bin/python ]; then echo "$PWD/.venv/bin/python"; return; fi
  local managed
  managed=$(python3 -c 'import os, sysconfig
print(int(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))')
  if [ "$managed" = 1 ] || [ "$(id -u)" != 0 ]; then echo "$PWD/.venv/bin/python"; return; fi
  echo python3
}
