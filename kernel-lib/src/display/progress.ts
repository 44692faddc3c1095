// Progress for long loops: one notebook output slot rewritten in place (tqdm's notebook bar), or
// a line on stderr in a terminal. diffusers: pipe.set_progress_bar_config(disable=True).
import { isNotebook, newSlot } from "./notebook.js";

export interface ProgressOptions { disable?: boolean; desc?: string }

export class ProgressBar {
  private start = Date.now();
  private slot = isNotebook() ? newSlot() : null;
  private lastDraw = 0;
  constructor(private total: number, private opts: ProgressOptions = {}) {
    this.draw(0, true);
  }

  update(done: number): void {
    this.draw(done, done >= this.total);
  }

  /** seconds since the bar was made */
  elapsed(): number {
    return (Date.now() - this.start) / 1000;
  }

  private draw(done: number, force: boolean): void {
    if (this.opts.disable) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 250) return;
    this.lastDraw = now;
    const frac = this.total ? done / this.total : 1;
    const secs = this.elapsed();
    const rate = done > 0 ? `${(secs / done).toFixed(2)} s/it` : "";
    const width = 30;
    const filled = Math.round(frac * width);
    const text = `${this.opts.desc ? this.opts.desc + " " : ""}${Math.round(frac * 100)}%|${"█".repeat(filled)}${" ".repeat(width - filled)}| ${done}/${this.total} [${secs.toFixed(1)} s${rate ? ", " + rate : ""}]`;
    if (this.slot) this.slot.text(text);
    else if (done >= this.total && process.stderr.isTTY) process.stderr.write(`\r${text}\n`);
    else if (process.stderr.isTTY) process.stderr.write(`\r${text}`);
  }
}
