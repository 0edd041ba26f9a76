/* Logs (Discover): query, time range, histogram that zooms on drag, newest first, facets, live tail. */
"use strict";
(() => {
  const { api, esc, el, go, every, status, RANGES, iso, shortTime, niceInterval, chart } = Console;
  const FACETS = ["component", "level", "host", "logger"];
  const PAGE = 200;
  const TRACEABLE = [["request_id", "request_id"], ["global_request_id", "request_id"], ["instance_id", "instance"],
                     ["volume_id", "volume"]];

  function bounds(p) {
    if (p.range === "custom" && p.start) return { start: p.start, end: p.end || iso(Date.now()) };
    const secs = RANGES[p.range || "1h"] || 3600;
    const now = Date.now();
    return { start: iso(now - secs * 1000), end: iso(now) };
  }

  function levelCell(level) {
    const l = String(level || "").toUpperCase();
    return `<span class="lvl lvl-${esc(l)}">${esc(l)}</span>`;
  }

  function traceLinks(ev) {
    const out = [];
    for (const [field, kind] of TRACEABLE) {
      if (!ev[field]) continue;
      const v = String(ev[field]);
      out.push(`<a class="tag trace" href="#/trace?${kind}=${encodeURIComponent(v)}" title="Trace ${esc(field)} across services">${esc(v)}</a>`);
    }
    return out.join("");
  }

  function messageCell(ev) {
    let msg = String(ev.message || "");
    if (ev.type === "notification" && ev.event_type && msg !== ev.event_type) msg = `${ev.event_type}: ${msg}`;
    const nl = msg.indexOf("\n");
    if (nl < 0) return esc(msg);
    // A traceback (or any multi-line entry) folds under its first line.
    return `<details><summary>${esc(msg.slice(0, nl))} <span class="muted">(${msg.split("\n").length - 1} more lines)</span></summary><pre>${esc(msg.slice(nl + 1))}</pre></details>`;
  }

  function row(ev) {
    const lvl = String(ev.level || "").toUpperCase();
    const bad = ["ERROR", "CRITICAL", "FATAL"].includes(lvl) ? " bad" : "";
    return `<tr class="ev${bad}" data-id="${esc(ev.id)}"><td class="t mono">${esc(shortTime(ev["@timestamp"]))}</td>
      <td>${esc(ev.host)}</td><td>${esc(ev.component)}</td><td>${levelCell(lvl)}</td>
      <td class="msg mono">${messageCell(ev)}<div>${traceLinks(ev)}</div></td></tr>`;
  }

  function facets(box, events, addFilter) {
    box.innerHTML = `<h2>Fields <span class="muted">(in the ${events.length} shown)</span></h2>`;
    for (const f of FACETS) {
      const counts = new Map();
      for (const ev of events) { const v = ev[f]; if (v != null && v !== "") counts.set(String(v), (counts.get(String(v)) || 0) + 1); }
      const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
      const sec = el(`<div class="facet"><h3>${f}</h3><ul></ul></div>`);
      for (const [v, n] of top) {
        const li = el(`<li><button type="button" title="Filter ${esc(f)}:${esc(v)}"><span class="v">${esc(v)}</span><span class="muted">${n}</span></button></li>`);
        li.querySelector("button").addEventListener("click", () => addFilter(f, v));
        sec.querySelector("ul").appendChild(li);
      }
      if (!top.length) sec.querySelector("ul").appendChild(el(`<li class="muted">none</li>`));
      box.appendChild(sec);
    }
  }

  const quoteValue = (v) => (/^[\w.\-@]+$/.test(v) ? v : '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"');

  Console.page("logs", async (main, p) => {
    main.appendChild(el(`<section aria-label="Logs">
      <form class="bar" id="search-form" role="search">
        <label class="sr" for="q" hidden>Query</label>
        <input type="search" id="q" name="q" placeholder='component:nova AND level:ERROR   "No valid host"' aria-label="Query" accesskey="s">
        <select id="range" aria-label="Time range">
          <option value="15m">Last 15 minutes</option><option value="1h">Last hour</option>
          <option value="24h">Last 24 hours</option><option value="7d">Last 7 days</option><option value="custom">Custom</option>
        </select>
        <span id="custom" hidden><input type="datetime-local" id="start" aria-label="From (UTC)" step="1">
          <input type="datetime-local" id="end" aria-label="To (UTC)" step="1"></span>
        <button type="submit">Search</button>
        <label><input type="checkbox" id="tail"> Live tail</label>
      </form>
      <div class="panel"><div id="hist-title" class="muted">Matching events over time (drag to zoom)</div><div id="hist" class="chart"></div></div>
      <div class="layout"><aside class="panel" id="facets" aria-label="Field facets"></aside>
        <div class="panel"><div id="count" class="muted" aria-live="polite"></div>
        <table class="events"><thead><tr><th>Time (UTC)</th><th>Host</th><th>Component</th><th>Level</th><th>Message</th></tr></thead>
        <tbody id="rows"></tbody></table></div></div></section>`));
    const $ = (id) => main.querySelector("#" + id);
    $("q").value = p.q || "";
    $("range").value = p.range || "1h";
    const toLocal = (s) => (s ? s.replace("Z", "").slice(0, 19) : "");
    $("start").value = toLocal(p.start); $("end").value = toLocal(p.end);
    $("custom").hidden = $("range").value !== "custom";
    $("tail").checked = p.tail === "1";
    $("range").addEventListener("change", () => { $("custom").hidden = $("range").value !== "custom"; if ($("range").value !== "custom") submit(); });
    $("tail").addEventListener("change", submit);
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });

    function submit(extra = {}) {
      $("count").removeAttribute("data-done");  // what is shown is no longer the answer to the query typed
      const range = extra.range || $("range").value;
      const params = { q: $("q").value.trim(), range, tail: $("tail").checked ? "1" : "" };
      if (range === "custom") {
        params.start = extra.start || ($("start").value ? $("start").value + "Z" : "");
        params.end = extra.end || ($("end").value ? $("end").value + "Z" : "");
      }
      go("logs", params);
    }

    function addFilter(field, value) {
      const q = $("q").value.trim();
      $("q").value = (q ? `(${q}) AND ` : "") + `${field}:${quoteValue(value)}`;
      submit();
    }

    const { start, end } = bounds(p);
    const span = (Date.parse(end) - Date.parse(start)) / 1000;
    const interval = niceInterval(span);
    const q = p.q || "";
    status("searching…");
    const t0 = performance.now();
    let events, hist;
    try {
      [events, hist] = await Promise.all([
        api("/v1/events", { q, start, end, limit: PAGE }),
        api("/v1/events/histogram", { q, start, end, interval: `${interval}s` }),
      ]);
    } catch (e) {
      $("count").innerHTML = `<span class="error">${esc(e.message)}</span>`;
      $("count").dataset.done = "error";  // tests and scripts wait on this rather than on timing
      status("query refused", true);
      return;
    }
    status(`${Math.round(performance.now() - t0)} ms`);
    $("count").textContent = `${hist.total} events match; showing the newest ${events.length}`;
    $("rows").innerHTML = events.map(row).join("");
    facets($("facets"), events, addFilter);
    $("count").dataset.done = "ok";

    const xs = hist.buckets.map((b) => Date.parse(b.start) / 1000);
    const ys = hist.buckets.map((b) => b.count);
    chart($("hist"), {
      height: 140,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      series: [{}, { label: "events", fill: "rgba(31,95,191,.35)", stroke: "#1f5fbf",
                     paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } }],
      hooks: { setSelect: [(u) => {
        if (u.select.width < 3) return;
        // Each bar is drawn centred on its bucket's start: the zoom covers every bucket the drag touched,
        // whole, so the lines counted under a bar are all in the zoomed range.
        const x0 = xs[0] || 0;
        const first = Math.round((u.posToVal(u.select.left, "x") - x0) / interval);
        const last = Math.round((u.posToVal(u.select.left + u.select.width, "x") - x0) / interval);
        submit({ range: "custom", start: iso((x0 + first * interval) * 1000), end: iso((x0 + (last + 1) * interval) * 1000) });
      }] },
    }, [xs, ys]);

    if (p.tail === "1") {
      const seen = new Set(events.map((e) => e.id));
      every(2000, async () => {
        const batch = await api("/v1/events", { q, start: "-120s", limit: 1000, order: "asc" }).catch(() => []);
        const fresh = batch.filter((e) => !seen.has(e.id));
        if (!fresh.length) return;
        fresh.forEach((e) => seen.add(e.id));
        $("rows").insertAdjacentHTML("afterbegin", fresh.reverse().map(row).join(""));
        const rows = $("rows").querySelectorAll("tr.ev");
        for (let i = 1000; i < rows.length; i++) rows[i].remove();
        status(`live: +${fresh.length} at ${new Date().toISOString().slice(11, 19)}`);
      });
    }
  });
})();
