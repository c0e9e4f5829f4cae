#!/usr/bin/env bash
# Downloads into .whl/ (ignored by git) every package scripts/device_check.py needs that the GPU machine's image
# lacks, for a machine with no network: Python 3.12 manylinux x86_64 wheels, pinned to the versions this project's
# venv is tested with. The image has torch 2.11, torchvision 0.26, numpy, scipy, opencv, PyYAML, tensorboard, onnx,
# matplotlib, pytest and pytest-xdist; it lacks hydra-core, omegaconf, albumentations and pydensecrf2 and what
# they need. pydensecrf2 has no wheel on the registry (an sdist only): it is built here into a cp312 wheel when a
# Python 3.12 is found (its extensions need only GLIBC 2.29 and GLIBCXX 3.4.21), else its sdist travels with the
# Cython its build pins and device_check.py builds it there. antlr4-python3-runtime 4.9.3 is a pure-Python sdist:
# built here into a py3 wheel. Then the total is checked against the device tool's 64 MiB for what travels.
#
#     scripts/device_wheels.sh        # then the device run (scripts/device_check.py's docstring) carries .whl
#
# PYTHON (default python3) runs pip here; PYTHON312 names a Python 3.12 for the pydensecrf2 build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=.whl
LIMIT=$((64 * 1024 * 1024))

WHEELS=(  # what the image lacks, each pinned; its own requirements are named here too (pip runs with --no-deps)
    hydra-core==1.3.8 omegaconf==2.3.1
    albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0  # pydantic 2.14 needs a newer one than some images hold; it only adds names
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

rm -rf "$OUT"
mkdir -p "$OUT"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]/#/--platform=}" -d "$OUT" "${WHEELS[@]}"
"$PYTHON" -m pip wheel -q --no-deps -w "$OUT" antlr4-python3-runtime==4.9.3  # hydra-core 1.3 needs 4.9.*

for candidate in "${PYTHON312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    # the first that runs and is 3.12 (pyenv's shim answers to the name without a 3.12 selected)
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        PYTHON312=$candidate
        break
    fi
done
if [ -n "${PYTHON312:-}" ] && "$PYTHON312" -m pip wheel -q --no-deps -w "$OUT" pydensecrf2==1.1; then
    echo "pydensecrf2: built a cp312 wheel with $PYTHON312"
else
    echo "pydensecrf2: no Python 3.12 here (set PYTHON312=...); carrying its sdist and Cython 0.29.36 to build there"
    mkdir -p "$OUT/sdist" "$OUT/build"
    "$PYTHON" -m pip download -q --no-deps --no-binary=:all: -d "$OUT/sdist" pydensecrf2==1.1
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]/#/--platform=}" -d "$OUT/build" Cython==0.29.36  # its pyproject's pin
fi

ls -l "$OUT" "$OUT"/*/ 2>/dev/null | grep -v '^total' || true
wheels=$(du -sb "$OUT" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -n 1 | cut -f1)
echo "$OUT: $((wheels / 1024)) KiB; with the working tree that travels beside it: $(((wheels + tree) / 1024)) KiB" \
     "of the device tool's $((LIMIT / 1024)) KiB"
if [ $((wheels + tree)) -ge $LIMIT ]; then
    echo "device_wheels.sh: error: .whl/ and the working tree come to $((wheels + tree)) bytes, over the 64 MiB" \
         "a device run carries" >&2
    exit 1
fi
