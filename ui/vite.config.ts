// The UI is plain TypeScript (no framework): four small screens that mostly render what the
// helper reports do not need one, and the bundle stays a few tens of KiB.
import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "safari15",
    // No inline assets or modulepreload polyfill: the CSP allows only 'self'.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: {
    root,
    environment: "happy-dom",
    include: ["src/**/*.test.ts"],
  },
});
