// The console's own accessibility checks, evaluated in the page beside axe-core's rules: each
// states one promise of the console exactly (one h1, every id unique, 4.5:1 for all text,
// placeholders included), and names each offender by a selector.
({
  selector(el) {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && parts.length < 4; e = e.parentElement) {
      let part = e.localName;
      const id = e.getAttribute("id");  // not e.id: a form with a field named "id" answers that field
      if (id) { parts.unshift(part + "#" + CSS.escape(id)); break; }
      if (e.classList.length) part += "." + [...e.classList].map((c) => CSS.escape(c)).join(".");
      const twins = e.parentElement ? [...e.parentElement.children].filter((s) => s.localName === e.localName) : [];
      if (twins.length > 1) part += ":nth-of-type(" + (twins.indexOf(e) + 1) + ")";
      parts.unshift(part);
    }
    return parts.join(" > ");
  },

  rgba(text) {
    const m = /rgba?\(([\d.]+)[ ,]+([\d.]+)[ ,]+([\d.]+)(?:[ ,/]+([\d.]+%?))?\)/.exec(text || "");
    if (!m) return null;
    let a = m[4] === undefined ? 1 : parseFloat(m[4]);
    if (m[4] && m[4].endsWith("%")) a /= 100;
    return [parseFloat(m[1]), parseFloat(m[2]), parseFloat(m[3]), a];
  },

  over(top, bottom) {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  },

  luminance(c) {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  },

  ratio(a, b) {
    const [hi, lo] = [this.luminance(a), this.luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  },

  // The colour behind an element: its own background and its ancestors', laid over white.
  background(el) {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage !== "none") return { unknown: this.selector(e) + " has a background image" };
      const color = this.rgba(style.backgroundColor);
      if (color && color[3] > 0) layers.push(color);
      if (color && color[3] === 1) break;
    }
    return layers.reverse().reduce((below, layer) => this.over(layer, below), [255, 255, 255, 1]);
  },

  visible(el) {
    const style = getComputedStyle(el);
    return el.getClientRects().length > 0 && style.visibility === "visible" && parseFloat(style.opacity) > 0;
  },

  contrast() {
    const problems = [];
    const check = (el, fg, what) => {
      const bg = this.background(el);
      if (bg.unknown) { problems.push(`${this.selector(el)}: ${bg.unknown}`); return; }
      const ratio = this.ratio(this.over(fg, bg), bg);
      if (ratio < 4.5) problems.push(`${this.selector(el)}: ${what} contrast ${ratio.toFixed(2)}:1 < 4.5:1`);
    };
    for (const el of document.body.querySelectorAll("*")) {
      if (el.closest(":disabled") || !this.visible(el)) continue;
      // A field's value and a select's choice are drawn in its colour, without a text node of its own
      const field = el.matches('input:not([type="hidden"], [type="checkbox"], [type="radio"]), select, textarea');
      const text = field || [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
      if (text) {
        const style = getComputedStyle(el);
        const svg = el instanceof SVGElement;
        check(el, this.rgba(svg ? style.fill : style.color), "text");
      }
      if ((el.localName === "input" || el.localName === "textarea") && el.placeholder && !el.value) {
        check(el, this.rgba(getComputedStyle(el, "::placeholder").color), "placeholder");
      }
    }
    return problems;
  },

  name(el) {
    const labelledby = (el.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean)
      .map((id) => document.getElementById(id)).filter(Boolean).map((e) => e.textContent.trim()).join(" ");
    const labels = el.labels ? [...el.labels].map((l) => l.textContent.trim()).join(" ") : "";
    return (el.getAttribute("aria-label") || "").trim() || labelledby.trim() || labels;
  },

  structure() {
    const problems = [];
    const lang = document.documentElement.getAttribute("lang");
    if (!lang || !lang.trim()) problems.push("html: no lang");
    const h1 = document.querySelectorAll("h1").length;
    if (h1 !== 1) problems.push(`document: ${h1} h1 elements, not one`);
    const mains = document.querySelectorAll('main, [role="main"]').length;
    if (mains !== 1) problems.push(`document: ${mains} main landmarks, not one`);
    const seen = new Map();
    for (const el of document.querySelectorAll("[id]")) seen.set(el.getAttribute("id"), (seen.get(el.getAttribute("id")) || 0) + 1);
    for (const [id, count] of seen) if (count > 1) problems.push(`#${id}: the id is used ${count} times`);
    for (const el of document.querySelectorAll('input:not([type="hidden"]), select, textarea')) {
      if (!this.name(el)) problems.push(`${this.selector(el)}: a form control without a label, aria-label or aria-labelledby`);
    }
    for (const el of document.querySelectorAll('button, a[href], [role="button"], [role="link"]')) {
      if (!this.name(el) && !el.textContent.trim()) problems.push(`${this.selector(el)}: a ${el.matches('a, [role="link"]') ? "link" : "button"} without an accessible name`);
    }
    for (const el of document.querySelectorAll("img")) {
      if (!el.hasAttribute("alt")) problems.push(`${this.selector(el)}: an image without alt`);
    }
    for (const el of document.querySelectorAll("svg")) {
      if (el.closest('[aria-hidden="true"]')) continue;
      const title = [...el.children].some((c) => c.localName === "title" && c.textContent.trim());
      if (!(el.getAttribute("role") === "img" && this.name(el)) && !title) {
        problems.push(`${this.selector(el)}: an SVG without role="img" and aria-label, or a <title>`);
      }
    }
    return problems;
  },

  // Headings, labels, buttons and links whose words the layout breaks in pieces: columns or
  // controls too narrow for the screen. Alert data is left out: it is cut anywhere on purpose.
  brokenWords() {
    const problems = [];
    const names = "h1, h2, h3, th, caption, figcaption, label, legend, button, summary, a, .outcome, .status";
    for (const el of document.querySelectorAll(names)) {
      if (!this.visible(el)) continue;
      const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement.closest("bdi, code, option, .sr-only")) continue;
        for (const match of node.textContent.matchAll(/[^\s\/-]{2,}/g)) {  // a break after - or / is fine
          const range = document.createRange();
          range.setStart(node, match.index);
          range.setEnd(node, match.index + match[0].length);
          const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
          if (lines.size > 1) problems.push(`${this.selector(el)}: "${match[0]}" broken over ${lines.size} lines`);
        }
      }
    }
    return problems;
  },

  // What shows where the keyboard is: an outline or a box-shadow, and an outline that stands out
  // at 3:1 against what is around the element.
  focus() {
    const el = document.activeElement;
    if (!el || el === document.body) return { element: "body", problem: "nothing has the focus" };
    const style = getComputedStyle(el);
    const element = this.selector(el);
    const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
    if (!outline && style.boxShadow === "none") return { element, problem: "no outline and no box-shadow" };
    if (outline) {
      const around = this.background(el.parentElement || el);
      const ratio = around.unknown ? 0 : this.ratio(this.rgba(style.outlineColor), around);
      if (ratio < 3) return { element, problem: `the outline's contrast is ${ratio.toFixed(2)}:1 < 3:1` };
    }
    return { element, problem: null };
  },
})
