# Sourced by run.sh and test.sh: make .venv with Python 3.11.3+ and install $1 when it changed.
# (3.11.3 fixed asyncio.timeout under a pending cancellation, gh-102780: the streams rely on it.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
requirements="$1"

if [ ! -x .venv/bin/python ]; then
  python_bin=""
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11, 3))' 2>/dev/null; then
      python_bin="$candidate"; break
    fi
  done
  if [ -z "$python_bin" ]; then echo "Python 3.11.3 or newer is required." >&2; exit 1; fi
  echo "Creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi

stamp=".venv/.installed-$(basename "$requirements")"
wanted=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "Installing $requirements into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi
