#!/usr/bin/env bash
# Build tfpipe's images on the local Debian base (needs the engine: scripts/docker_engine.sh start).
#
#   scripts/build_images.sh [jobs-cpu] [airflow] [postgres] [jobs-gpu]   (default: jobs-cpu airflow)
#
# Every build uses host networking (the engine has no bridge) and BuildKit (layer cache and
# pip's wheel cache persist in the engine's data root, so a rebuild after a code change
# re-installs only tfpipe). pip in the build reaches the registry the host's pip uses:
# its index settings are read from the host's configuration and passed as build arguments,
# never written into the repository. Each image's build time goes to stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=scripts/docker_env.sh
. "$here/docker_env.sh"
TAG=${TFPIPE_IMAGE_TAG:-0.1.0}
BASE=${TFPIPE_BASE_IMAGE:-tfpipe-base:bookworm-py3.11}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jobs-cpu airflow)

"$DOCKER" version >/dev/null 2>&1 || { echo "no Docker engine at $DOCKER_HOST: run scripts/docker_engine.sh start" >&2; exit 1; }
"$here/build_base_image.sh" "$BASE"

# The host pip's index settings (environment first, then its config files), http(s) only:
# file:// indexes name folders of this host, which a build cannot see.
pip_args=()
while IFS='=' read -r name value; do
    [ -n "$value" ] && pip_args+=(--build-arg "$name=$value")
done < <(python3 - <<'PY'
import os, re, subprocess
listed = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
config = {}
for line in listed.splitlines():
    m = re.match(r"^(:env:|global|install)\.([\w-]+)='(.*)'$", line)
    if m and m.group(2) not in config:
        config[m.group(2)] = m.group(3)
for key in ("index-url", "extra-index-url", "trusted-host"):
    var = "PIP_" + key.upper().replace("-", "_")
    value = os.environ.get(var) or config.get(key, "")
    words = [w for w in value.split() if key == "trusted-host" or w.startswith(("http://", "https://"))]
    print(f"{var}={' '.join(words)}")
PY
)

build() {  # name dockerfile target tag [extra build args...]
    local name=$1 file=$2 target=$3 tag=$4 start
    shift 4
    start=$(date +%s)
    "$DOCKER" build --network host --progress plain \
        --build-arg "BASE_IMAGE=$BASE" "${pip_args[@]}" "$@" \
        -f "$repo/$file" --target "$target" -t "$tag" "$repo" \
        >"$TFPIPE_DOCKER_RUN/build-$name.log" 2>&1 \
        || { tail -n 40 "$TFPIPE_DOCKER_RUN/build-$name.log" >&2; echo "build of $tag failed (log: $TFPIPE_DOCKER_RUN/build-$name.log)" >&2; exit 1; }
    echo "$tag built in $(($(date +%s) - start)) s, $("$DOCKER" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')"
}

for target in "${targets[@]}"; do
    case $target in
        jobs-cpu) build jobs-cpu docker/Dockerfile.jobs-cpu jobs "tfpipe-jobs-cpu:$TAG" ;;
        airflow) build airflow docker/Dockerfile.airflow airflow "tfpipe-airflow:$TAG" ;;
        jobs-gpu) build jobs-gpu docker/Dockerfile.jobs-gpu jobs "tfpipe-jobs-gpu:$TAG" ;;
        postgres) build postgres docker/Dockerfile.postgres postgres "tfpipe-postgres:15-bookworm" ;;
        *) echo "unknown image $target (jobs-cpu, airflow, postgres, jobs-gpu)" >&2; exit 2 ;;
    esac
done
