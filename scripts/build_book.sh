#!/usr/bin/env bash
# Build the executed site of the book into _build/html, then check that every chapter really ran.
#
#   bash scripts/build_book.sh                  default: loads results/, trains small runs live
#   SRBOOK_QUICK=1 bash scripts/build_book.sh   quick mode, as CI runs it (every cell, tiny budgets)
#   bash scripts/build_book.sh --retrain        recompute results/ (hours on a CPU; each chapter
#                                               prints its expected time before it starts)
#   bash scripts/build_book.sh --fresh          forget earlier live runs (runs/book/) first
#
# Every chapter is executed (execute_notebooks: force in _config.yml). `-W -n --keep-going`
# turns every warning into a failure (a failing cell, a broken cross-reference, an unknown
# citation) after reporting all of them; a plain build would exit 0 when a notebook fails.
# Then every executed notebook is checked: each code cell has run, none holds an error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for argument in "$@"; do
    case "$argument" in
        --fresh) rm -rf runs/book ;;
        --retrain) export SRBOOK_RETRAIN=1 ;;
        *) echo "usage: [SRBOOK_QUICK=1] bash scripts/build_book.sh [--fresh] [--retrain]" >&2
           exit 2 ;;
    esac
done

# OpenMP threads that spin while they wait cost several times their work when anything else
# shares the cores (measured: README, "Performance"); the user's own setting wins.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

started=$(date +%s)
echo "building the book (SRBOOK_QUICK=${SRBOOK_QUICK:-0} SRBOOK_RETRAIN=${SRBOOK_RETRAIN:-0})"

# The chapters evaluate on Set5 and Set14: make sure the data root has them (srlib.data).
if ! python -c "from srlib.data import benchmark_dir; benchmark_dir('Set5'); benchmark_dir('Set14')" \
        2>/dev/null; then
    echo "Set5/Set14 are not in the data root (SRLIB_DATA=${SRLIB_DATA:-~/.cache/srlib}):" \
         "downloading them with 'srlib download benchmarks'"
    srlib download benchmarks
fi

# The chapters name the kernel "python3": make sure this Python provides it.
python - <<'PY'
import sys
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
try:
    KernelSpecManager().get_kernel_spec("python3")
except NoSuchKernel:
    import subprocess
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"],
                   check=True)
PY

# Results of an earlier build must not pass for this one's.
rm -rf _build/html _build/jupyter_execute _build/.doctrees _build/screenshots

mkdir -p _build
jupyter-book build . -W -n --keep-going 2>&1 | tee _build/build.log
# Time per chapter, from the executor's log.
grep -o "notebooks/[0-9a-z_]*\.md: Executed notebook in [0-9.]* seconds" _build/build.log || true
python - <<'PY'
import sys
from pathlib import Path

from srlib.tools.notebook import check_executed

chapters = sorted(Path("notebooks").glob("*.md"))
problems = []
for chapter in chapters:
    executed = Path("_build/jupyter_execute/notebooks") / f"{chapter.stem}.ipynb"
    if not executed.is_file():
        problems.append(f"{chapter}: no executed notebook ({executed})")
    else:
        problems.extend(check_executed(executed))
for problem in problems:
    print(problem, file=sys.stderr)
if problems or not chapters:
    sys.exit(f"book check failed: {len(problems)} problem(s) in {len(chapters)} chapter(s)")
print(f"book check: {len(chapters)} chapters executed, every code cell ran, no errors")
PY

echo "book built in $(( $(date +%s) - started )) s: _build/html/index.html"
