import { startApp } from "./app";

const root = document.getElementById("app");
if (root) {
  startApp(root).catch((e: unknown) => {
    root.textContent = `Underpass could not start its window: ${String(e)}`;
  });
}
