"""Executes a graded notebook (the student's cells, then the grader's) with nbclient and the tslab kernel,
cell by cell, for kernel-lib/src/grading/execute.ts.

- Errors do not stop the run (allow_errors): tslab reports them on stderr with status "error" and aborts
  every request arriving within 200 ms after an error, so the next cell waits ERROR_PAUSE seconds.
- A cell that times out or kills the kernel is skipped: the kernel is started again and the notebook is
  run again from the top without it (so checks that do not depend on that cell still run).
- The kernel's own stdout/stderr go to a log file, not to this process's stdout (which carries the summary).
Writes the executed notebook to --out and prints one JSON line: per cell its status and seconds."""
import argparse, json, os, subprocess, sys, time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

ERROR_PAUSE = 0.6

ap = argparse.ArgumentParser()
ap.add_argument("notebook")
ap.add_argument("--out", required=True)
ap.add_argument("--cwd", required=True, help="working directory of the kernel")
ap.add_argument("--cell-timeout", type=float, default=120)
ap.add_argument("--deadline", type=float, default=900, help="seconds for the whole run, restarts included")
ap.add_argument("--kernel", default="tslab")
ap.add_argument("--log", default=os.devnull, help="file for the kernel's own stdout/stderr")
ap.add_argument("--max-restarts", type=int, default=3)
a = ap.parse_args()

nb = nbformat.read(a.notebook, as_version=4)
start = time.time()
status = {}   # cell index -> "ok" | "error" | "timeout" | "dead" | "not-run"
seconds = {}
skip = {}     # cell index -> why it is skipped on a restart
attempts = 0
log = open(a.log, "ab")

while True:
    attempts += 1
    restart = False
    errors = []
    last = -1
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    client = NotebookClient(nb, kernel_name=a.kernel, timeout=int(a.cell_timeout), allow_errors=True,
                            shutdown_kernel="immediate", resources={"metadata": {"path": a.cwd}},
                            on_cell_error=lambda cell, cell_index, execute_reply: errors.append(cell_index))
    try:
        with client.setup_kernel(stdout=log, stderr=log):
            prov = getattr(client.km, "provisioner", None)
            pid = getattr(prov, "pid", None)
            if pid:
                print(f"KERNEL_PID {pid}", file=sys.stderr, flush=True)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if i in skip:  # timed out or killed the kernel in an earlier attempt: keep that status
                    continue
                left = a.deadline - (time.time() - start)
                if left <= 1:
                    status[i] = "not-run"
                    continue
                client.timeout = int(max(1, min(a.cell_timeout, left)))
                if errors and errors[-1] == last:
                    time.sleep(ERROR_PAUSE)
                t0 = time.time()
                last = i
                try:
                    client.execute_cell(cell, i)
                    status[i] = "error" if errors and errors[-1] == i else "ok"
                except CellTimeoutError:
                    status[i] = skip[i] = "timeout"
                    restart = True
                except DeadKernelError:
                    status[i] = skip[i] = "dead"
                    restart = True
                finally:
                    seconds[i] = round(time.time() - t0, 3)
                if restart:
                    break
    except Exception as e:  # the kernel would not start, or died between cells
        print(f"runner: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if not restart:
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "code" and i not in status:
                    status[i] = "not-run"
    if not restart or attempts > a.max_restarts or time.time() - start > a.deadline:
        break
    # restart: cells after the failing one run again in the next attempt
    status = {i: s for i, s in status.items() if i in skip}

for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code" and i not in status:
        status[i] = "not-run"
nbformat.write(nb, a.out)
print(json.dumps({"attempts": attempts, "seconds": round(time.time() - start, 2),
                  "cells": [{"index": i, "status": status[i], "seconds": seconds.get(i)} for i in sorted(status)]}))
