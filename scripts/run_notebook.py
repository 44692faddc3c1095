"""The kit's one notebook runner: executes a notebook with nbclient and the tslab kernel, cell by cell, writes
the executed copy (and with --images its PNG outputs), and prints a one-line JSON summary as its last stdout line.
Used by `npm run lesson` (and so the lessons test), the browser test, `npm run rehearse` and the grader
(grader/src/execute.ts).

Two ways to meet a failing cell:
- default (lessons, CI, rehearsal): the run stops at the first cell that errors, times out or kills the kernel;
  that cell, its source, its outputs and the kernel's last words go to stderr, headed
  "FAILED: <notebook>, code cell #<index> (<error type>)" (tslab reports errors on stderr with an empty message).
- --keep-going (grading): errors do not stop the run. tslab aborts every request arriving within 200 ms after an
  error, so the cell after an error waits ERROR_PAUSE seconds. A cell that times out or kills the kernel is
  skipped: the kernel is started again and the notebook runs again from the top without it (at most
  --max-restarts times), so the cells that do not depend on it still run.
--deadline bounds the whole run (restarts included); cells left when it is up are "not-run".
--log sends the kernel's own stdout/stderr to a file (default: this process's, as Jupyter would show them).
--report-kernel-pid prints "KERNEL_PID <pid>" on stderr when the kernel starts (a caller's backstop kills it).

Summary: {"notebook", "ok", "seconds", "png_outputs", "slowest_cells": [[index, seconds], ...] (the three
slowest), "attempts", "cells": [{"index", "status", "seconds"}, ...]}, status "ok" | "error" | "timeout" |
"dead" | "not-run" per code cell. Exit 1 when the run stopped at a cell (default) or when any code cell did not
run ok (--keep-going), else 0."""
import argparse, base64, json, os, sys, time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ERROR_PAUSE = 0.6

ap = argparse.ArgumentParser()
ap.add_argument("notebook")
ap.add_argument("--out", required=True, help="executed notebook path")
ap.add_argument("--images", help="folder for the PNG outputs")
ap.add_argument("--timeout", "--cell-timeout", dest="timeout", type=float, default=1800, help="seconds per cell")
ap.add_argument("--kernel", default="tslab")
ap.add_argument("--cwd", help="working directory of the kernel (default: the notebook's folder)")
ap.add_argument("--keep-going", action="store_true", help="run past failing cells; skip a hanging or kernel-killing cell")
ap.add_argument("--max-restarts", type=int, default=3, help="with --keep-going: kernel restarts after a timeout or a dead kernel")
ap.add_argument("--deadline", type=float, default=None, help="seconds for the whole run, restarts included")
ap.add_argument("--log", help="file for the kernel's own stdout/stderr")
ap.add_argument("--report-kernel-pid", action="store_true", help='print "KERNEL_PID <pid>" on stderr')
a = ap.parse_args()

nb = nbformat.read(a.notebook, as_version=4)
cwd = a.cwd or os.path.dirname(os.path.abspath(a.notebook))
deadline = a.deadline if a.deadline is not None else float("inf")
start = time.time()
status = {}   # code cell index -> "ok" | "error" | "timeout" | "dead" | "not-run"
seconds = {}
skip = {}     # --keep-going: cell index -> why it is skipped on a restart
failure = None  # default mode: (cell index, error type, exception) of the cell that stopped the run
attempts = 0
log = open(a.log, "ab") if a.log else None
code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def run_cells(client, errors, attempt):
    """One attempt: every code cell in order; attempt["restart"] set when the kernel must be started again."""
    global failure
    last = -1
    kernel_io = {"stdout": log, "stderr": log} if log else {}
    with client.setup_kernel(**kernel_io):
        if a.report_kernel_pid:
            pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
            if pid:
                print(f"KERNEL_PID {pid}", file=sys.stderr, flush=True)
        # as NotebookClient.execute does: the kernel's language_info in the notebook's metadata
        info = client.wait_for_reply(client.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            nb.metadata["language_info"] = info["content"]["language_info"]
        for i in code_cells:
            cell = nb.cells[i]
            if i in skip:  # timed out or killed the kernel in an earlier attempt: keep that status
                continue
            left = deadline - (time.time() - start)
            if left <= 1:
                status[i] = "not-run"
                if failure is None and not a.keep_going:
                    failure = (i, "DeadlineExceeded", None)
                continue
            client.timeout = int(max(1, min(a.timeout, left)))
            if errors and errors[-1] == last:
                time.sleep(ERROR_PAUSE)
            t0 = time.time()
            last = i
            try:
                client.execute_cell(cell, i, execution_count=client.code_cells_executed + 1)
                status[i] = "error" if errors and errors[-1] == i else "ok"
            except (CellTimeoutError, DeadKernelError) as e:
                status[i] = skip[i] = "timeout" if isinstance(e, CellTimeoutError) else "dead"
                if a.keep_going:
                    attempt["restart"] = True
                else:
                    failure = (i, type(e).__name__, e)
                return
            except CellExecutionError as e:  # default mode: the cell reported an error
                status[i] = "error"
                failure = (i, type(e).__name__, e)
                return
            finally:
                seconds[i] = round(time.time() - t0, 3)
        client.set_widgets_metadata()


while True:
    attempts += 1
    errors = []
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    client = NotebookClient(nb, kernel_name=a.kernel, timeout=int(a.timeout), allow_errors=a.keep_going,
                            shutdown_kernel="immediate" if a.keep_going else "graceful",
                            resources={"metadata": {"path": cwd}},
                            on_cell_error=lambda cell, cell_index, execute_reply: errors.append(cell_index))
    attempt = {"restart": False}
    try:
        run_cells(client, errors, attempt)
    except Exception as e:  # the kernel would not start, or died between cells
        print(f"runner: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if failure is None and not a.keep_going:
            running = [i for i in code_cells if i not in status]
            failure = (running[0] if running else -1, type(e).__name__, e)
    if not attempt["restart"] or attempts > a.max_restarts or time.time() - start > deadline:
        break
    # restart: the cells after the skipped one run again in the next attempt
    status = {i: s for i, s in status.items() if i in skip}

for i in code_cells:
    status.setdefault(i, "not-run")
# default: a cell tagged "raises-exception" may fail (as in nbclient); --keep-going: every code cell ran ok
ok = all(s == "ok" for s in status.values()) if a.keep_going else failure is None

if failure is not None:
    i, kind, e = failure
    cell = nb.cells[i] if 0 <= i < len(nb.cells) else None
    print(f"FAILED: {a.notebook}, code cell #{i} ({kind})", file=sys.stderr)
    if cell is not None:
        print("---- cell source ----", file=sys.stderr)
        print(cell.source, file=sys.stderr)
        print("---- cell output ----", file=sys.stderr)
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                print(o.get("text", ""), file=sys.stderr, end="")
            elif o.get("output_type") == "error":
                print("\n".join(o.get("traceback", [])) or o.get("evalue", ""), file=sys.stderr)
    msg = str(e).strip().splitlines() if e is not None else [f"the run's deadline ({a.deadline} s) was up"]
    if msg:
        print("---- kernel said ----\n" + "\n".join(msg[-5:]), file=sys.stderr)

os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
nbformat.write(nb, a.out)
n_png = 0
if a.images:
    os.makedirs(a.images, exist_ok=True)
    for old in os.listdir(a.images):
        if old.endswith(".png"):
            os.remove(os.path.join(a.images, old))
    for ci, cell in enumerate(nb.cells):
        for oi, o in enumerate(cell.get("outputs", [])):
            png = o.get("data", {}).get("image/png")
            if png:
                with open(os.path.join(a.images, f"cell{ci:02d}_{oi}.png"), "wb") as f:
                    f.write(base64.b64decode(png))
                n_png += 1
print(json.dumps({"notebook": a.notebook, "ok": ok, "seconds": round(time.time() - start, 2), "png_outputs": n_png,
                  "slowest_cells": sorted(seconds.items(), key=lambda x: -x[1])[:3], "attempts": attempts,
                  "cells": [{"index": i, "status": status[i], "seconds": seconds.get(i)} for i in sorted(status)]}))
sys.exit(0 if ok else 1)
