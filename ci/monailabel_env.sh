#!/usr/bin/env bash
# Creates or updates the MONAI Label virtualenv and prints its python path (the only line on stdout).
#
# MONAI Label gets an environment of its own: its inference path imports torchvision, and torchvision needs the
# torch build it was made for (torch 2.14.1 / torchvision 0.29.1), while the main .venv keeps the CPU torch 2.13.
# A stamp of the pins and pyproject.toml skips pip when nothing changed, so a second run returns at once.
#
#   bash ci/monailabel_env.sh                       # -> <repo>/.venv-label/bin/python
#   XLSTM_MONAI_LABEL_VENV=/opt/label bash ci/monailabel_env.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${XLSTM_MONAI_LABEL_VENV:-$repo/.venv-label}"
python="${PYTHON:-python3.11}"
torch_pins=(torch==2.14.1 torchvision==0.29.1)

stamp="$venv/.xlstm-monai-label-stamp"
wanted="${torch_pins[*]} $(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv" >&2
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    # the pins go in the same resolve as monailabel, so pip cannot swap torch for another build
    "$venv/bin/pip" install -q "${torch_pins[@]}" -e "$repo[label]" >&2
    echo "$wanted" >"$stamp"
fi
echo "$venv/bin/python"
