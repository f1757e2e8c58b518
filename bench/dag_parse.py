"""How long Airflow takes to re-parse the DAG file as the number of pipeline specs grows.

The DAG processor re-runs `dags/tfpipe_pipelines.py` every refresh interval in a process
where Airflow and the provider are already imported, so the figure that matters is a
re-parse in a warm process: a `DagBag` of the file, with N generated specs (the sample
`ctr` spec under N names) in `TFPIPE_SPECS_DIR`. Each N runs in a new interpreter: its first
parse (imports included), then the median of several. `--compare-with REF` measures an
older commit's code beside this checkout's, interleaved, in the same run.

Run in the Airflow environment: `make bench-dag-parse` (`dag_parse.py --specs 1 10 50 100`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags" / "tfpipe_pipelines.py"
SAMPLE = REPO / "dags" / "pipelines" / "ctr"


def make_specs(folder: Path, count: int) -> None:
    """`count` copies of the sample spec, each a pipeline of its own name and score table."""
    text = (SAMPLE / "pipeline.yaml").read_text()
    for i in range(count):
        name = f"p{i:03d}"
        target = folder / name
        target.mkdir(parents=True)
        for sql in SAMPLE.glob("*.sql"):
            shutil.copy(sql, target / sql.name)
        spec = text.replace("pipeline: ctr\n", f"pipeline: {name}\n").replace("ctr_scores", f"{name}_scores")
        (target / "pipeline.yaml").write_text(spec)


def parse_once(dag_file: Path) -> tuple[float, int]:
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(dag_folder=str(dag_file), safe_mode=False)
    seconds = time.perf_counter() - start
    if bag.import_errors:
        raise RuntimeError(f"the DAG file did not parse: {bag.import_errors}")
    return seconds, len(bag.dags)


def measure(dag_file: Path, repeats: int) -> dict[str, float]:
    """In this process: the first parse (imports included), then the median warm re-parse."""
    start = time.perf_counter()
    parse_once(dag_file)
    first = time.perf_counter() - start
    runs = [parse_once(dag_file) for _ in range(repeats)]
    return {"cold": first, "warm": statistics.median(s for s, _ in runs), "dags": runs[0][1]}


def measure_tree(tree: Path, specs: Path, repeats: int) -> dict[str, float]:
    """`measure` in a new interpreter on the provider and DAG file of `tree` (this checkout
    or an older commit's), so two versions compare in one run."""
    env = {**os.environ, "TFPIPE_SPECS_DIR": str(specs), "PYTHONPATH": str(tree / "plugins")}
    code = "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
    code += "from dag_parse import measure; print('RESULT ' + json.dumps(measure(Path(sys.argv[2]), int(sys.argv[3]))))"
    dag_file = tree / DAG_FILE.relative_to(REPO)
    argv = [sys.executable, "-c", code, str(Path(__file__).parent), str(dag_file), str(repeats)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{tree}: the parse failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def top_functions(dag_file: Path, limit: int) -> str:
    parse_once(dag_file)
    profile = cProfile.Profile()
    profile.enable()
    parse_once(dag_file)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(limit)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-with", metavar="REF", help="also measure this git commit's code, interleaved")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest calls of the largest parse")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    with tempfile.TemporaryDirectory(prefix="tfpipe-dag-parse-") as tmp:
        trees = {"this checkout": REPO}
        if args.compare_with:
            old = Path(tmp) / "baseline"
            git = ["git", "-C", str(REPO), "worktree"]
            subprocess.run([*git, "add", "--detach", str(old), args.compare_with], check=True)
            trees[args.compare_with] = old
        try:
            rows = []
            for count in args.specs:
                folder = Path(tmp) / f"specs-{count}"
                make_specs(folder, count)
                for name, tree in trees.items():
                    rows.append((name, count, measure_tree(tree, folder, args.repeats)))
            if args.profile:
                os.environ["TFPIPE_SPECS_DIR"] = str(Path(tmp) / f"specs-{max(args.specs)}")
                print(top_functions(DAG_FILE, args.profile))
        finally:
            if args.compare_with:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees[args.compare_with])])
    print(f"\n{'code':<14} {'specs':>5} {'DAGs':>5} {'warm re-parse':>14} {'per spec':>9} {'first parse':>12}")
    for name, count, m in rows:
        warm = m["warm"] * 1000
        print(f"{name:<14} {count:>5} {m['dags']:>5.0f} {warm:>11.0f} ms {warm / count:>6.1f} ms {m['cold']:>10.2f} s")
    print("target: a warm re-parse <= 20 ms per spec, growing linearly to 100 specs")
    for name in trees:
        mine = [(count, m["warm"]) for n, count, m in rows if n == name]
        if len(mine) > 1:
            (c0, w0), (c1, w1) = mine[0], mine[-1]
            print(f"{name}: {(w1 - w0) / (c1 - c0) * 1000:.1f} ms per added spec from {c0} to {c1} specs")


if __name__ == "__main__":
    main()
