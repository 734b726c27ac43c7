#!/usr/bin/env bash
# Build the executed site of the book into _build/html, then check that every chapter really ran.
#
#   bash scripts/build_book.sh                    full settings (long on a CPU)
#   SRBOOK_QUICK=1 bash scripts/build_book.sh     quick mode, as CI runs it (minutes on 2 cores)
#   bash scripts/build_book.sh --fresh            forget earlier runs (runs/book/), train again
#
# Every chapter is executed (execute_notebooks: force in _config.yml). `-W -n --keep-going`
# turns every warning into a failure (a failing cell, a broken cross-reference, an unknown
# citation) after reporting all of them; a plain build would exit 0 when a notebook fails.
# Then every executed notebook is checked: each code cell has run, none holds an error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "--fresh" ]]; then
    rm -rf runs/book
elif [[ $# -gt 0 ]]; then
    echo "usage: [SRBOOK_QUICK=1] bash scripts/build_book.sh [--fresh]" >&2
    exit 2
fi

started=$(date +%s)
echo "building the book (SRBOOK_QUICK=${SRBOOK_QUICK:-0})"

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

jupyter-book build . -W -n --keep-going

python - <<'PY'
import sys
from pathlib import Path

from srlib.notebook import check_executed

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
