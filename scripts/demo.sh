#!/usr/bin/env bash
# make demo: sample warehouse -> ctr_daily for one day, run by a local Airflow's scheduler and
# LocalExecutor (scripts/local_airflow.py) -> the score table. Airflow keeps running afterwards.
set -euo pipefail
ds="$1"
rows="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p .tfpipe
local_airflow=(.venv-airflow/bin/python scripts/local_airflow.py)
started=$(date +%s)

echo "== 1/4 local warehouse with sample data ($rows events a day, 3 days up to $ds)"
.venv-jobs/bin/tfpipe-job sample-data --warehouse "$TFPIPE_WAREHOUSE" --end-date "$ds" --days 3 \
  --rows-per-day "$rows" --candidates-per-day $((rows / 4)) 2>&1 | tail -n 1

echo "== 2/4 local Airflow (api-server, scheduler, dag-processor, triggerer, TensorBoard)"
"${local_airflow[@]}" start

# Triggered before ctr_daily is unpaused (trigger unpauses it): the scheduler then finds the
# run of the latest interval already there instead of creating one of its own.
echo "== 3/4 ctr_daily for ds=$ds, triggered through the REST API"
run_id=$("${local_airflow[@]}" trigger ctr_daily --ds "$ds")
echo "run $run_id"
if ! "${local_airflow[@]}" wait ctr_daily "$run_id"; then
  echo "the run did not succeed: each task's log is in the UI (or .tfpipe/airflow/logs/)" >&2
  exit 1
fi

echo "== 4/4 the score table"
.venv-airflow/bin/python scripts/show_scores.py --warehouse "$TFPIPE_WAREHOUSE" --spec dags/pipelines/ctr/pipeline.yaml --ds "$ds"

url="http://127.0.0.1:${TFPIPE_AIRFLOW_PORT:-8080}"
run_path=$(.venv-airflow/bin/python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$run_id")
echo
echo "demo took $(( $(date +%s) - started ))s. Local Airflow is still running:"
echo "  the run:   $url/dags/ctr_daily/runs/$run_path"
echo "  login:     user admin, password in .tfpipe/airflow/simple_auth_manager_passwords.json.generated"
echo "  status:    make airflow-status"
echo "  stop:      make airflow-stop"
