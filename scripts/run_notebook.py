"""Execute one notebook top to bottom with the tslab kernel (nbclient), write the executed copy and
its PNG outputs, and on a failing cell print that cell and its stderr (tslab reports errors on
stderr with an empty error message). Exit 1 on failure."""
import argparse, base64, json, os, sys, time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

ap = argparse.ArgumentParser()
ap.add_argument("notebook")
ap.add_argument("--out", required=True, help="executed notebook path")
ap.add_argument("--images", help="folder for the PNG outputs")
ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
ap.add_argument("--kernel", default="tslab")
ap.add_argument("--cwd", help="working directory of the kernel (default: the notebook's folder)")
a = ap.parse_args()

nb = nbformat.read(a.notebook, as_version=4)
cwd = a.cwd or os.path.dirname(os.path.abspath(a.notebook))
state = {"index": -1, "start": time.time()}
times = []


def on_start(cell, cell_index, **kw):
    state["index"] = cell_index
    state["t0"] = time.time()


def on_complete(cell, cell_index, **kw):
    times.append((cell_index, time.time() - state["t0"]))


client = NotebookClient(nb, kernel_name=a.kernel, timeout=a.timeout, resources={"metadata": {"path": cwd}},
                        on_cell_start=on_start, on_cell_executed=on_complete)
ok = True
try:
    client.execute()
except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as e:
    ok = False
    i = state["index"]
    cell = nb.cells[i] if 0 <= i < len(nb.cells) else None
    print(f"FAILED: {a.notebook}, code cell #{i} ({type(e).__name__})", file=sys.stderr)
    if cell is not None:
        print("---- cell source ----", file=sys.stderr)
        print(cell.source, file=sys.stderr)
        print("---- cell output ----", file=sys.stderr)
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                print(o.get("text", ""), file=sys.stderr, end="")
            elif o.get("output_type") == "error":
                print("\n".join(o.get("traceback", [])) or o.get("evalue", ""), file=sys.stderr)
    msg = str(e).strip().splitlines()
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
total = time.time() - state["start"]
print(json.dumps({"notebook": a.notebook, "ok": ok, "seconds": round(total, 1), "png_outputs": n_png,
                  "slowest_cells": sorted(times, key=lambda x: -x[1])[:3]}))
sys.exit(0 if ok else 1)
