import { describe, expect, it } from "vitest";
import { flagIcon, flagImage } from "./flags";

describe("flag images", () => {
  it("maps a country code to its own flag, in either case", () => {
    expect(flagImage("SE")).toMatch(/\/se\.svg$/);
    expect(flagImage("se")).toBe(flagImage("SE"));
    expect(flagImage("GB")).toMatch(/\/gb\.svg$/);
    expect(flagImage("SE")).not.toBe(flagImage("NO"));
  });

  it("shows the unknown-location globe for no code, an unknown code or a non-code", () => {
    const globe = flagImage(null);
    expect(globe).toMatch(/\/unknown\.svg$/);
    expect(flagImage("ZZ")).toBe(globe);
    expect(flagImage("")).toBe(globe);
    expect(flagImage("../se")).toBe(globe);
    expect(flagImage("unknown")).toBe(globe);
  });

  it("renders a decorative image, never emoji text", () => {
    const img = flagIcon("DE");
    expect(img.tagName).toBe("IMG");
    expect(img.getAttribute("src")).toMatch(/\/de\.svg$/);
    expect(img.getAttribute("alt")).toBe("");
    expect(img.textContent).toBe("");
  });
});
