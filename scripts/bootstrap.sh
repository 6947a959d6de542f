#!/usr/bin/env bash
# Create or refresh .venv with a CPython that NNabla 1.39.0 supports (3.8-3.10) and install nnc-tl into it.
# Finds the interpreter in this order: $PYTHON, python3.10, python3.9, python3.8, pyenv's 3.10.*, 3.9.*, 3.8*.
# Re-running when .venv is current only compares a stamp and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,plot}

usable() {  # usable CMD -> prints the interpreter's real path when it is CPython 3.8-3.10 with venv
  "$1" - <<'PY' 2>/dev/null
import sys, platform, venv, ensurepip
ok = platform.python_implementation() == "CPython" and (3, 8) <= sys.version_info[:2] <= (3, 10)
print(sys.executable) if ok else sys.exit(1)
PY
}

find_python() {
  local c
  for c in ${PYTHON:+"$PYTHON"} python3.10 python3.9 python3.8; do
    command -v "$c" >/dev/null 2>&1 && usable "$c" && return 0
  done
  local root
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for c in "$root"/versions/3.10.*/bin/python "$root"/versions/3.9.*/bin/python "$root"/versions/3.8.*/bin/python; do
    [ -x "$c" ] && usable "$c" && return 0
  done
  return 1
}

stamp_of() {
  cat setup.cfg pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1
  echo "$EXTRAS"
}

want=$(stamp_of)
if [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/nnc-tl" ] && [ "$(cat "$VENV/.nnc-tl-stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

if ! py=$(find_python); then
  echo "bootstrap: no CPython 3.8-3.10 found (NNabla 1.39.0 needs one): install Python 3.10 (e.g. 'pyenv install 3.10.13') or set PYTHON=/path/to/python3.10." >&2
  exit 1
fi
echo "bootstrap: using $py ($("$py" -V 2>&1))"
if [ -x "$VENV/bin/python" ] && ! usable "$VENV/bin/python" >/dev/null; then
  rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$EXTRAS]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# NNabla's ONNX exporter ships in nnabla-converter, whose TensorFlow requirements it does not need: without them.
case ",$EXTRAS," in *,dev,*|*,onnx,*)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps nnabla-converter==1.39.0 ;;
esac
# An editable install gets no bytecode from pip, and with PYTHONDONTWRITEBYTECODE set nothing writes it later: every
# command would compile the package again (about 40 ms of apply-freeze's start-up). Stale files are simply recompiled.
"$VENV/bin/python" -m compileall -q nnc_tools >/dev/null
"$VENV/bin/python" -c "import nnabla, nnc_tools" 2>/dev/null || { echo "bootstrap: nnabla or nnc_tools does not import in $VENV" >&2; exit 1; }
echo "$want" > "$VENV/.nnc-tl-stamp"
echo "bootstrap: $VENV ready"
