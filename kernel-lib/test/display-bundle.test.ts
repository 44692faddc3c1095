// The display helpers' MIME bundles: markdown goes with its HTML (Jupyter Notebook 6 shows no lone
// text/markdown display_data), a chart's plotly HTML holds its PNG and goes with image/png, text/plain
// is last, and the bundle reaches the kernel as ONE display_data (or update_display_data for a slot).
import { describe, it, expect } from "vitest";
import * as tslab from "tslab";
import { markdownBundle, markdownToHtml, htmlToPlainText, sendBundle, displayDataContent } from "../src/display/notebook.js";
import { plotBundle } from "../src/display/plot.js";

describe("display bundles", () => {
  it("markdown tables become HTML tables (markdown-it), the markdown stays beside them", () => {
    const md = ["| key | value |", "|---|---:|", "| `num_train_timesteps` | 1000 |", "| token | `a</w>` |", "| pipe | a \\| b |"].join("\n");
    const b = markdownBundle(md);
    expect(Object.keys(b)).toEqual(["text/markdown", "text/html", "text/plain"]);
    const html = b["text/html"] as string;
    expect(html).toMatch(/<table>[\s\S]*<th>key<\/th>[\s\S]*<th style="text-align:right">value<\/th>/);
    expect(html).toContain("<code>num_train_timesteps</code>");
    expect(html).toContain("<code>a&lt;/w&gt;</code>");
    expect(html).toContain(`<td style="text-align:right">a | b</td>`);
    expect(b["text/plain"]).toBe(md);
    expect(markdownToHtml("**bold** <b>raw</b>")).toBe("<p><strong>bold</strong> &lt;b&gt;raw&lt;/b&gt;</p>\n");
  });

  it("plain text of HTML drops scripts and tags", () => {
    expect(htmlToPlainText("<p>a &amp; b</p><script>var x = 1 < 2;</script><table><tr><td>1</td></tr></table>")).toBe("a & b 1");
  });

  it("one display_data per bundle, binary base64, text/plain last; a slot is updated in place", () => {
    const sent: { content: ReturnType<typeof displayDataContent>; update: boolean }[] = [];
    const writer = (content: ReturnType<typeof displayDataContent>, update: boolean) => sent.push({ content, update });
    const png = Uint8Array.from([137, 80, 78, 71]);
    sendBundle({ "text/plain": "[picture]", "image/png": png }, tslab.display, writer);
    expect(sent[0].update).toBe(false);
    expect(Object.keys(sent[0].content.data)).toEqual(["image/png", "text/plain"]);
    expect(sent[0].content.data["image/png"]).toBe(Buffer.from(png).toString("base64"));
    expect(sent[0].content.transient).toEqual({});
    const slot = tslab.newDisplay();
    sendBundle({ "text/plain": "1" }, slot, writer);
    sendBundle({ "text/plain": "2" }, slot, writer);
    expect(sent.slice(1).map((s) => s.update)).toEqual([false, true]);
    const id = (sent[1].content.transient as { display_id?: string }).display_id;
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect((sent[2].content.transient as { display_id?: string }).display_id).toBe(id);
    // the global display never turns into updates
    sendBundle({ "text/plain": "3" }, tslab.display, writer);
    expect(sent[3].update).toBe(false);
  });

  it("without the kernel's writer the richest single type goes through Display.raw", () => {
    const got: [string, unknown][] = [];
    const fake = { raw: (t: string, c: unknown) => got.push([t, c]) } as unknown as ReturnType<typeof tslab.newDisplay>;
    sendBundle(markdownBundle("| a |\n|---|\n| 1 |"), fake, null);
    expect(got.map(([t]) => t)).toEqual(["text/html"]);
  });

  it("tslab still keeps the kernel's display writer where sendBundle looks for it", () => {
    // tslab 1.0.22's Display.raw calls jupyter.lastWriteDisplayData; an upgrade that moves it must fail here
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const jupyter = require("tslab/dist/jupyter");
    expect("lastWriteDisplayData" in jupyter).toBe(true);
    const impl = tslab.newDisplay() as unknown as Record<string, unknown>;
    expect(typeof impl.id).toBe("string");
  });

  it("a chart is one bundle: plotly HTML over its PNG, the PNG, a summary", async () => {
    const b = await plotBundle([{ x: [0, 1, 2], y: [1, 4, 9], name: "squares" }], { title: "y = x²" });
    expect(Object.keys(b)).toEqual(["text/html", "image/png", "text/plain"]);
    const png = b["image/png"] as Buffer;
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    const html = b["text/html"] as string;
    expect(html).toContain(`src="data:image/png;base64,${png.toString("base64")}"`);
    expect(html).toMatch(/Plotly\.newPlot/);
    expect(html).toContain(`"title":{"text":"y = x²"}`); // plotly.js 3+ ignores a bare string title
    expect(b["text/plain"]).toBe("[chart: y = x² — 1 trace(s): squares]");
    const still = await plotBundle([{ x: [0, 1], y: [0, 1] }], {}, { interactive: false });
    expect(Object.keys(still)).toEqual(["image/png", "text/plain"]);
  });
});
