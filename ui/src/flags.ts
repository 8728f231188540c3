/// <reference types="vite/client" />
// Flag images for the country picker (assets/flags: see its README). Images, not emoji: Windows
// has no flag emoji and would show letter pairs, and some fonts lack the globe. Vite copies each
// file into the bundle, so the webview loads only the flags it shows.

import { h } from "./dom";

const files = import.meta.glob<string>("../../assets/flags/*.svg", { eager: true, query: "?url", import: "default" });

const byName = new Map<string, string>();
for (const [path, url] of Object.entries(files)) {
  const name = path.slice(path.lastIndexOf("/") + 1, -".svg".length);
  byName.set(name, url);
}

const UNKNOWN = byName.get("unknown")!;

/** The image of a country's flag (`"SE"` → se.svg); the globe for no code or an unknown one. */
export function flagImage(code: string | null): string {
  if (code === null || !/^[A-Za-z]{2}$/.test(code)) return UNKNOWN;
  return byName.get(code.toLowerCase()) ?? UNKNOWN;
}

/** The flag as an image; decorative (`alt=""`), as the country's name is beside it. */
export function flagIcon(code: string | null): HTMLImageElement {
  return h("img", { class: "flag", src: flagImage(code), alt: "", width: 24, height: 18 });
}
