// openfero console: live rows on the timeline, select-all on the dead letters, an action's progress.
// Everything the server sends is HTML it escaped itself (Jinja, autoescaped); this script never
// builds markup from alert data, and the page's CSP allows no other script.
"use strict";

function parseRow(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

function followTimeline() {
  const body = document.getElementById("rows");
  if (!body || !window.EventSource) return;
  const limit = parseInt(body.closest("table").dataset.limit || "500", 10);
  const status = document.getElementById("live-status");
  const reload = document.getElementById("live-reload");
  const source = new EventSource("/timeline/events" + window.location.search);
  let added = 0;
  source.addEventListener("rows", (event) => {
    const data = JSON.parse(event.data);
    for (const item of data.rows) {
      const row = parseRow(item.html);
      if (!row) continue;
      const old = document.getElementById("a-" + item.id);
      if (old) {
        old.replaceWith(row);
        continue;
      }
      const newest = body.firstElementChild;
      if (newest && newest.dataset.received && item.received < newest.dataset.received) continue;
      row.classList.add("fresh");
      body.prepend(row);
      added += 1;
      while (body.children.length > limit) body.lastElementChild.remove();
    }
    if (added) status.textContent = added + " new alerts since the page was loaded.";
    if (data.more) reload.hidden = false;
    document.body.dataset.live = "updated";
  });
  source.addEventListener("charts", (event) => {
    const data = JSON.parse(event.data);
    const charts = document.getElementById("charts");
    const fresh = document.createElement("template");
    fresh.innerHTML = data.html;
    charts.replaceChildren(fresh.content);
  });
  source.addEventListener("reload", () => {
    reload.hidden = false;
    source.close();
  });
  source.addEventListener("open", () => { document.body.dataset.live = "open"; });
}

function selectAll() {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('#dead-form input[name="id"]')) box.checked = all.checked;
  });
}

function followOperation() {
  const op = document.getElementById("operation");
  if (!op || op.dataset.state === "done" || op.dataset.state === "failed") return;
  const progress = document.getElementById("progress");
  const text = document.getElementById("op-text");
  const timer = window.setInterval(async () => {
    const response = await fetch("/operations/" + encodeURIComponent(op.dataset.id) + ".json", { credentials: "same-origin" });
    if (!response.ok) return;
    const s = await response.json();
    progress.max = s.selected;
    progress.value = s.done;
    let line = s.state + ": " + s.done + " of " + s.selected;
    if (s.state === "done" && s.missing) line += "; " + s.missing + " were no longer in the queue (replayed or purged elsewhere, or held by another reader: read again and retry)";
    if (s.error) line += "; " + s.error;
    text.textContent = line;
    op.dataset.state = s.state;
    if (s.state === "done" || s.state === "failed") window.clearInterval(timer);
  }, 500);
}

document.addEventListener("DOMContentLoaded", () => {
  followTimeline();
  selectAll();
  followOperation();
});
