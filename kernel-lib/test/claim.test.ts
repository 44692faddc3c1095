import { describe, it, expect, vi } from "vitest";
import { claim, markedClaims, reportedClaims } from "../src/eval/claim.js";

describe("claim: a sentence about a picture, measured", () => {
  it("prints a line the lessons test can read, for both outcomes", () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(claim("guidance-digit", true, "7 of 8 digits read as prompted")).toBeUndefined();
      claim("lora-thick", false, "2 of 8 thick");
      expect(log.mock.calls.map((c) => c[0])).toEqual(["✔ claim guidance-digit: 7 of 8 digits read as prompted", "✘ claim lora-thick does not hold on this run: 2 of 8 thick"]);
      const text = log.mock.calls.map((c) => c[0]).join("\n");
      expect([...reportedClaims(text)]).toEqual([["guidance-digit", true], ["lora-thick", false]]);
    } finally { log.mockRestore(); }
  });
  it("a claim reported twice holds only if it held both times", () => {
    expect(reportedClaims("✔ claim a-b: x\n✘ claim a-b does not hold on this run: y\n✔ claim c: z").get("a-b")).toBe(false);
  });
  it("reads the markers of the markdown", () => {
    expect(markedClaims("The negative prompt turns it white. <!-- claim: negative-white -->\n<!--claim:x-2-->")).toEqual(["negative-white", "x-2"]);
  });
  it("refuses bad ids and empty measurements, naming them", () => {
    expect(() => claim("Not An Id", true, "x")).toThrow(/lower-case words.*"Not An Id"/);
    expect(() => claim("ok", "yes" as unknown as boolean, "x")).toThrow(/holds must be a boolean; got string/);
    expect(() => claim("ok", true, " ")).toThrow(/claim "ok": say what was measured/);
  });
});
