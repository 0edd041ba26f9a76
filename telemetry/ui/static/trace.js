/* Trace: every line and notification naming one request, instance or volume, services on one axis, time on the other. */
"use strict";
(() => {
  const { api, esc, el, go, status, shortTime, chart } = Console;
  const KINDS = { request_id: "Request id", instance: "Instance", volume: "Volume" };
  const LEVEL_COLOURS = { ERROR: "#c62828", CRITICAL: "#c62828", FATAL: "#c62828", WARNING: "#b26a00", WARN: "#b26a00" };

  Console.page("trace", async (main, p) => {
    const kind = Object.keys(KINDS).find((k) => p[k]) || "request_id";
    main.appendChild(el(`<section aria-label="Trace">
      <form class="bar" id="trace-form">
        <select id="kind" aria-label="What to trace">${Object.entries(KINDS).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
        <input class="wide mono" id="ident" aria-label="Id to trace" placeholder="req-… or an instance / volume id">
        <button type="submit">Trace</button>
      </form>
      <div id="summary" class="panel muted" aria-live="polite">Give a request id (req-…), an instance or a volume id, or click one in Logs.</div>
      <div class="panel"><div id="timeline" class="chart"></div></div>
      <div class="panel"><table class="events"><thead><tr><th>Time (UTC)</th><th>+ms</th><th>Service</th><th>Host</th><th>Level</th><th>Message</th></tr></thead>
      <tbody id="trace-rows"></tbody></table></div></section>`));
    const $ = (id) => main.querySelector("#" + id);
    $("kind").value = kind;
    $("ident").value = p[kind] || "";
    $("trace-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      if ($("ident").value.trim()) go("trace", { [$("kind").value]: $("ident").value.trim() });
    });
    if (!p[kind]) { $("ident").focus(); return; }

    let t;
    try { t = await api("/v1/events/trace", { [kind]: p[kind] }); } catch (e) {
      $("summary").innerHTML = `<span class="error">${esc(e.message)}</span>`; return;
    }
    const evs = t.events;
    if (!evs.length) { $("summary").textContent = `No stored event names ${t.id}.`; return; }
    const t0 = Date.parse(evs[0]["@timestamp"]);
    const tN = Date.parse(evs[evs.length - 1]["@timestamp"]);
    const service = (e) => String(e.component || e.publisher_id || "?");
    const firstBad = evs.find((e) => ["ERROR", "CRITICAL", "FATAL"].includes(String(e.level || "").toUpperCase()));
    $("summary").classList.remove("muted");
    $("summary").innerHTML = `<strong>${esc(t.id)}</strong>: ${evs.length} events${t.truncated ? " (first ones only)" : ""} over
      ${((tN - t0) / 1000).toFixed(3)} s across <strong>${t.services.map(esc).join(" → ")}</strong> on ${t.hosts.map(esc).join(", ")}
      ${firstBad ? `<div class="error">First error: ${esc(service(firstBad))} at ${esc(shortTime(firstBad["@timestamp"]))}: ${esc(String(firstBad.message).split("\n")[0])}</div>` : ""}`;

    // Rows, in time order.
    $("trace-rows").innerHTML = evs.map((e) => {
      const lvl = String(e.level || (e.type === "notification" ? e.priority || "NOTIFICATION" : "")).toUpperCase();
      const msg = e.type === "notification" ? `${e.event_type || ""} ${e.message && e.message !== e.event_type ? e.message : ""}` : String(e.message || "");
      const nl = msg.indexOf("\n");
      const body = nl < 0 ? esc(msg) : `<details><summary>${esc(msg.slice(0, nl))}</summary><pre>${esc(msg.slice(nl + 1))}</pre></details>`;
      const bad = ["ERROR", "CRITICAL", "FATAL"].includes(lvl) ? " bad" : "";
      return `<tr class="trace-ev${bad}"><td class="t mono">${esc(shortTime(e["@timestamp"]))}</td>
        <td class="num mono">${Date.parse(e["@timestamp"]) - t0}</td><td class="svc">${esc(service(e))}</td><td>${esc(e.host)}</td>
        <td><span class="lvl lvl-${esc(lvl)}">${esc(lvl)}</span></td><td class="msg mono">${body}</td></tr>`;
    }).join("");

    // Timeline: x = time, y = the service's row; one point series per colour so errors stand out.
    const services = t.services;
    const xs = evs.map((e) => Date.parse(e["@timestamp"]) / 1000);
    const groups = { normal: "#1f5fbf", warning: "#b26a00", error: "#c62828" };
    const groupOf = (e) => { const c = LEVEL_COLOURS[String(e.level || "").toUpperCase()]; return c === "#c62828" ? "error" : c ? "warning" : "normal"; };
    const ys = Object.keys(groups).map((g) => evs.map((e) => (groupOf(e) === g ? services.indexOf(service(e)) : null)));
    const path = evs.map((e) => services.indexOf(service(e)));
    chart($("timeline"), {
      height: Math.max(140, 40 + services.length * 34),
      scales: { x: { time: true }, y: { range: [-0.5, services.length - 0.5] } },
      axes: [{}, { size: 110, splits: () => services.map((_, i) => i), values: (u, vals) => vals.map((v) => services[v] ?? "") }],
      series: [{ label: "time", value: (u, v) => (v == null ? "" : new Date(v * 1000).toISOString().slice(11, 23)) },
               { label: "path", stroke: "rgba(120,130,150,.45)", width: 1, points: { show: false }, value: (u, v) => services[v] ?? "" },
               ...Object.entries(groups).map(([g, c]) => ({ label: g, stroke: c, fill: c, width: 0, paths: () => null,
                 points: { show: true, size: 9, fill: c, stroke: c }, value: (u, v) => (v == null ? "" : services[v]) }))],
    }, [xs, path, ...ys]);
    status(`${evs.length} events`);
  });
})();
