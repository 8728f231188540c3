// A tiny element builder: no framework, no innerHTML (so nothing the helper or a profile says
// is ever parsed as markup).
type Attrs = Record<string, string | boolean | number | null | undefined | EventListener>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
}

export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: Node[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(c);
  return el;
}

const renderedKeys = new WeakMap<Element, string>();

/**
 * Replaces `el`'s children with `build()` only when `key` differs from the last render's.
 * Re-rendering an unchanged part would reset keyboard focus, make screen readers announce a
 * live region again, and invalidate element handles that tests hold.
 */
export function replaceKeyed(el: Element, key: string, build: () => (Child | Child[])[]): boolean {
  if (renderedKeys.get(el) === key) return false;
  renderedKeys.set(el, key);
  replace(el, ...build());
  return true;
}
