#!/usr/bin/env bash
# Installs the pinned clients the compat scripts drive, idempotently and quickly: each Python client
# goes into its own `pip install --target` directory under compat/.deps/ (git-ignored; kafka-python
# 2.x and 3.x cannot share one site-packages), kafkajs into compat/kafkajs/node_modules via `npm ci`.
# A step runs only when its pinned version is not already importable. kcat comes from apt (.ci/run).
# Usage: compat/install.sh            Prints where each client lives; exit 1 if an install fails.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

COMPAT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPS="$COMPAT/.deps"

# The pinned versions; compat/env.sh and tests/compat.rs find each client by <dir>.
PY_CLIENTS=(
    "kafka-python-2:kafka-python==2.3.3:kafka"
    "kafka-python-3:kafka-python==3.0.12:kafka"
    "aiokafka:aiokafka==0.14.0:aiokafka"
    "confluent-kafka:confluent-kafka==2.16.1:confluent_kafka"
)

# <dist> <dir>: the version of <dist> installed in <dir> itself (site-packages elsewhere do not count).
py_version_in() {
    python3 -c 'import importlib.metadata as m, sys
print(next((d.version for d in m.distributions(path=[sys.argv[2]])
            if d.metadata["Name"].lower() == sys.argv[1].lower()), ""))' "$1" "$2" 2>/dev/null || true
}

# <module> <dir>: the module imports, and from <dir>.
py_imports_from() {
    PYTHONPATH="$2" python3 -c 'import importlib, sys
sys.exit(not importlib.import_module(sys.argv[1]).__file__.startswith(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

for entry in "${PY_CLIENTS[@]}"; do
    IFS=: read -r dir requirement module <<<"$entry"
    want="${requirement#*==}"
    dist="${requirement%%==*}"
    target="$DEPS/$dir"
    if [ "$(py_version_in "$dist" "$target")" = "$want" ] && py_imports_from "$module" "$target"; then
        continue
    fi
    echo "compat/install.sh: installing $requirement into ${target#"$COMPAT"/}"
    rm -rf "$target"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$target" "$requirement"
done

# kafkajs: `npm ci` only when node_modules is missing or older than the lock file.
lock="$COMPAT/kafkajs/package-lock.json"
stamp="$COMPAT/kafkajs/node_modules/.package-lock.json"
if command -v npm >/dev/null 2>&1; then
    if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        echo "compat/install.sh: npm ci in compat/kafkajs"
        (cd "$COMPAT/kafkajs" && npm ci --silent --no-audit --no-fund)
    fi
else
    echo "compat/install.sh: npm not found; kafkajs is not installed (node 18+ and npm are needed)" >&2
fi
