#!/usr/bin/env bash
# make demo: sample warehouse -> ctr_daily for one day through Airflow -> the score table.
set -euo pipefail
ds="$1"
rows="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p .tfpipe
export AIRFLOW_HOME="$root/.tfpipe/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False

echo "== 1/3 local warehouse with sample data ($rows events a day, 3 days up to $ds)"
.venv-jobs/bin/tfpipe-job sample-data --warehouse "$TFPIPE_WAREHOUSE" --end-date "$ds" --days 3 \
  --rows-per-day "$rows" --candidates-per-day $((rows / 4)) 2>&1 | tail -n 1

echo "== 2/3 Airflow runs ctr_daily for ds=$ds (log: .tfpipe/demo-dag-run.log)"
.venv-airflow/bin/airflow db migrate > .tfpipe/airflow-db-migrate.log 2>&1
if ! .venv-airflow/bin/airflow dags test ctr_daily "$ds" > .tfpipe/demo-dag-run.log 2>&1; then
  tail -n 40 .tfpipe/demo-dag-run.log
  echo "the DAG run failed; full log in .tfpipe/demo-dag-run.log" >&2
  exit 1
fi

echo "== 3/3 the score table"
.venv-airflow/bin/python scripts/show_scores.py --warehouse "$TFPIPE_WAREHOUSE" --spec dags/pipelines/ctr/pipeline.yaml --ds "$ds"
