"""The ingestion view inside the Airflow UI (menu "HN ingestion"): one HTML page that reads the JSON API
with the viewer's session, so it shows exactly what the API would give them."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from hn_providers.auth import require_user

router = APIRouter(dependencies=[Depends(require_user)])

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HN ingestion</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 16px 24px; color: #1f2933; }
 h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 22px 0 8px; }
 .cards { display: flex; gap: 12px; flex-wrap: wrap; }
 .card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
 .card b { display: block; font-size: 22px; } .muted { color: #6b7280; }
 table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 4px 8px;
 border-bottom: 1px solid #eaeef2; vertical-align: top; } th { background: #f6f8fa; }
 .failed { color: #b42318; } .skipped { color: #8a6100; } .success { color: #067647; }
 form { display: flex; gap: 8px; } input[type=search] { flex: 1; padding: 6px; font-size: 14px; }
 .hit { margin: 10px 0; } .hit p { margin: 2px 0 0; color: #374151; } #error { color: #b42318; }
</style></head>
<body>
<h1>Hacker News ingestion</h1>
<div id="error"></div>
<div class="cards" id="counts"></div>
<p class="muted" id="freshness"></p>
<p id="reindex"></p>
<h2>Search the store</h2>
<form id="search-form"><input type="search" id="q" placeholder="a question or keywords" maxlength="2000">
<select id="mode"><option>hybrid</option><option>dense</option><option>text</option></select>
<button type="submit">Search</button></form>
<div id="results"></div>
<h2>Failed and skipped stories <span class="muted" id="problems-total"></span></h2>
<table id="problems"><thead><tr><th>Story</th><th>State</th><th>Reason</th><th>Next try</th></tr></thead>
<tbody></tbody></table>
<h2>Recent runs</h2>
<table id="runs"><thead><tr><th>Run</th><th>State</th><th>Ingested</th><th>Skipped</th><th>Failed</th>
<th>Chunks written</th><th>Note</th></tr></thead><tbody></tbody></table>
<script>
const api = (path) => fetch(new URL("api/" + path, document.baseURI), {credentials: "same-origin"})
  .then(async (r) => { const body = await r.json(); if (!r.ok) throw new Error(body.error || r.status); return body; });
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; };
const link = (href, text) => { const a = el("a", text); a.href = href; a.target = "_blank"; a.rel = "noopener"; return a; };
const row = (cells) => { const tr = el("tr"); for (const c of cells) { const td = el("td");
  if (c instanceof Node) td.append(c); else td.textContent = c ?? ""; tr.append(td); } return tr; };
const ago = (s) => s == null ? "n/a" : s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago"
  : s < 172800 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " days ago";
const clip = (text, n) => text.length > n ? text.slice(0, n).replace(/\s+\S*$/, "") + " ..." : text;
const fail = (e) => { document.getElementById("error").textContent = "Error: " + e.message; };

async function loadStatus() {
  const s = await api("status");
  const counts = document.getElementById("counts");
  counts.replaceChildren();
  for (const [label, value] of [["ingested", s.stories.ingested || 0], ["skipped", s.stories.skipped || 0],
                                ["failed", s.stories.failed || 0], ["chunks", s.chunks]]) {
    const card = el("div", undefined, "card"); card.id = "count-" + label;
    card.append(el("b", String(value)), el("span", label, "muted")); counts.append(card);
  }
  const f = s.freshness;
  document.getElementById("freshness").textContent = "Newest stored story posted " + ago(f.newest_story_age_seconds)
    + "; last story written " + ago(f.last_ingest_age_seconds)
    + (s.full_text_search ? "" : "; no full-text index on this Milvus server (dense search only)");
  document.getElementById("error").textContent = s.warning ? "Warning: " + s.warning : "";
  const r = s.reindex;
  document.getElementById("reindex").textContent = !r ? "" : "Reindex " + r.state + ": " + r.done + " of " + r.total
    + " stories done" + (r.state === "running" && r.seconds_left != null
      ? ", about " + Math.max(1, Math.round(r.seconds_left / 60)) + " min left" : "")
    + (r.given_up ? ", " + r.given_up + " given up (their batch failed on every pass)" : "");
  document.getElementById("problems-total").textContent = "(" + s.problems_total + ")";
  const problems = document.querySelector("#problems tbody");
  problems.replaceChildren(...s.problems.map((p) => row([
    link("https://news.ycombinator.com/item?id=" + p.story_id, p.story_id + " " + p.title),
    el("span", p.status, p.status), p.reason, p.retry])));
  const runs = document.querySelector("#runs tbody");
  runs.replaceChildren(...s.runs.map((r) => { const n = (r.summary || {}).stories || {};
    return row([r.run_id, el("span", r.state, r.state), n.ingested ?? "", n.skipped ?? "", n.failed ?? "",
                r.summary ? r.summary.chunks_written : "", r.note]); }));
}

document.getElementById("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const results = document.getElementById("results");
  const q = document.getElementById("q").value, mode = document.getElementById("mode").value;
  results.replaceChildren(el("p", "Searching...", "muted"));
  try {
    const r = await api("search?" + new URLSearchParams({q, mode, k: "10", chunks: "1"}));
    results.replaceChildren(...(r.notice ? [el("p", r.notice, "muted")] : []), ...r.stories.map((s) => {
      const hit = el("div", undefined, "hit"); hit.dataset.storyId = s.story_id;
      hit.append(link(s.url, s.title), " ", el("span", "(" + s.points + " points, " + s.domain + ") ", "muted"),
                 link(s.hn_url, "HN thread"), el("p", clip((s.chunks[0] || {}).text || "", 400)));
      return hit; }));
    if (!r.stories.length) results.replaceChildren(el("p", "No matching stories.", "muted"));
  } catch (e) { results.replaceChildren(el("p", "Error: " + e.message, "failed")); }
});
loadStatus().catch(fail);
</script>
</body></html>
"""


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def ingestion_view() -> str:
    return PAGE
