#!/usr/bin/env bash
# Snakemake runs this once inside the new conda env, from its working directory: install the `vit`
# package of the repository that holds that directory (the rules call `python -m vit.<stage>`).
set -euo pipefail
repo=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
python -m pip install --no-deps -e "$repo"
