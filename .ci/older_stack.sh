#!/usr/bin/env bash
# The stack Colab ships today (ipywidgets 7.7.1, pandas 2.2.3, ipykernel 6.17, IPython 7.34),
# in a venv of its own, running the tests that touch widgets, the DataFrame accessor and their
# compatibility shims.
# Usage: bash .ci/older_stack.sh [VENV_DIR]   (default .venv-older, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-older}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# pip warns about every missing mirror folder of this machine's configuration: keep the log readable
"$venv/bin/python" -m pip install -q -e '.[test]' 'ipywidgets==7.7.1' 'pandas==2.2.*' \
    'ipykernel==6.17.*' 'ipython==7.34.*' \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$venv/bin/python" - <<'PY'
import IPython, ipykernel, ipywidgets, pandas
print(f"older stack: ipywidgets {ipywidgets.__version__}, pandas {pandas.__version__}, "
      f"ipykernel {ipykernel.__version__}, IPython {IPython.__version__}")
assert ipywidgets.__version__ == "7.7.1", ipywidgets.__version__
assert pandas.__version__.startswith("2.2."), pandas.__version__
PY

# Test modules for display, widgets, the accessor and the compatibility shims.
subset=()
for path in tests/test_accessor*.py tests/test_batch*.py tests/test_display*.py \
    tests/test_widget*.py tests/test_compat*.py tests/test_upload*.py tests/test_gallery*.py \
    tests/test_review*.py tests/test_compare*.py tests/display tests/test_public_api.py; do
    [ -e "$path" ] && subset+=("$path")
done
if [ ${#subset[@]} -eq 0 ]; then
    echo "older stack: no display/accessor/widget test modules found" >&2
    exit 1
fi
echo "older stack: running ${subset[*]}"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "${subset[@]}"
