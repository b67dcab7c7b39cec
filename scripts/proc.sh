#!/usr/bin/env bash
# Runs one process type of the Procfile, the one place the production commands live:
#   scripts/proc.sh web|worker|beat
# The run command, the Docker image and compose all start their processes through it.
set -euo pipefail
cd "$(dirname "$0")/.."
line=$(sed -n "s/^$1:[[:space:]]*//p" Procfile | head -1)
if [ -z "$line" ]; then
  echo "scripts/proc.sh: no '$1:' line in Procfile" >&2
  exit 2
fi
exec bash -c "exec $line"
