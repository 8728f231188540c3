// A minimal W3C WebDriver client over fetch (Node 20): enough to drive the Tauri app through
// tauri-driver, with a bounded timeout on every call and on every wait.

const W3C_ELEMENT = "element-6066-11e4-a23f-4d9f3d96d1d5";

export class WebDriver {
  constructor(base, session) {
    this.base = base;
    this.session = session;
  }

  static async call(base, method, path, body, timeoutMs = 30000) {
    const res = await fetch(base + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) {
      const v = json.value ?? {};
      throw new Error(`${method} ${path}: ${res.status} ${v.error ?? ""} ${v.message ?? JSON.stringify(json)}`);
    }
    return json.value;
  }

  /** Waits for the driver to be ready (tauri-driver listens before WebKitWebDriver is up). */
  static async waitReady(base, timeoutMs = 30000) {
    const end = Date.now() + timeoutMs;
    let last;
    while (Date.now() < end) {
      try {
        const v = await WebDriver.call(base, "GET", "/status", undefined, 2000);
        if (v && v.ready !== false) return;
      } catch (e) {
        last = e;
      }
      await sleep(250);
    }
    throw new Error(`WebDriver at ${base} not ready after ${timeoutMs} ms: ${last}`);
  }

  static async start(base, application, args = []) {
    const v = await WebDriver.call(base, "POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application, args } } },
    }, 60000);
    return new WebDriver(base, v.sessionId);
  }

  cmd(method, path, body, timeoutMs) {
    return WebDriver.call(this.base, method, `/session/${this.session}${path}`, body, timeoutMs);
  }

  async quit() {
    await this.cmd("DELETE", "", undefined, 15000).catch(() => {});
  }

  async find(css) {
    const els = await this.cmd("POST", "/elements", { using: "css selector", value: css });
    return els.map((e) => e[W3C_ELEMENT] ?? e.ELEMENT ?? Object.values(e)[0]);
  }

  /** The first element matching `css`, waiting up to `timeoutMs` for it. */
  async el(css, timeoutMs = 10000) {
    return this.until(`element ${css}`, async () => (await this.find(css))[0], timeoutMs);
  }

  async click(css, timeoutMs = 10000) {
    const id = await this.until(`enabled ${css}`, async () => {
      const [e] = await this.find(css);
      if (!e) return undefined;
      return (await this.cmd("GET", `/element/${e}/enabled`)) ? e : undefined;
    }, timeoutMs);
    await this.cmd("POST", `/element/${id}/click`, {});
  }

  async type(css, text) {
    const id = await this.el(css);
    await this.cmd("POST", `/element/${id}/clear`, {});
    // WebKitWebDriver wants the legacy `value` array too; clearing is typing nothing.
    if (text !== "") await this.cmd("POST", `/element/${id}/value`, { text, value: [...text] });
  }

  /** The text of the first element matching `css` (null if none). A node that the app
   * replaced between finding it and reading it is looked up again, a bounded number of times. */
  async text(css) {
    for (let attempt = 1; ; attempt++) {
      try {
        const [id] = await this.find(css);
        if (!id) return null;
        return await this.cmd("GET", `/element/${id}/text`);
      } catch (e) {
        if (attempt >= 5 || !/stale element/i.test(String(e))) throw e;
        await sleep(100);
      }
    }
  }

  /** Waits until `css` has text for which `pred` is true; returns that text. */
  async waitText(css, pred, what, timeoutMs = 15000) {
    return this.until(what ?? `text of ${css}`, async () => {
      const t = await this.text(css);
      return t !== null && pred(t) ? t : undefined;
    }, timeoutMs, async () => `last text: ${JSON.stringify(await this.text(css).catch(() => null))}`);
  }

  async until(what, f, timeoutMs, explain) {
    return until(what, f, timeoutMs, explain);
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `f` every 200 ms until it returns a value (not undefined, null or false), at most
 * `timeoutMs`; the error names `what`, `explain()`'s words and the last exception. */
export async function until(what, f, timeoutMs, explain) {
  const end = Date.now() + timeoutMs;
  let err;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (e) {
      err = e;
    }
    await sleep(200);
  }
  const more = explain ? await explain() : "";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${more} ${err ?? ""}`);
}
