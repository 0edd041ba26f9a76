/* Meters: a meter and a resource, its statistics (avg, min, max per period) over time, as /v2/meters/{name}/statistics. */
"use strict";
(() => {
  const { api, esc, el, go, status, RANGES, iso, shortTime, niceInterval, chart } = Console;
  // As `telemetry statistics -q` reads them (the two-character operators first).
  const OPS = [["<=", "le"], [">=", "ge"], ["!=", "ne"], ["<", "lt"], [">", "gt"], ["=", "eq"]];

  Console.page("meters", async (main, p) => {
    main.appendChild(el(`<section aria-label="Meters">
      <form class="bar" id="meter-form">
        <select id="meter" aria-label="Meter"></select>
        <select id="resource" aria-label="Resource"><option value="">all resources</option></select>
        <select id="mrange" aria-label="Time range"><option value="1h">Last hour</option><option value="24h">Last 24 hours</option><option value="7d">Last 7 days</option></select>
        <input id="mq" class="mono" aria-label="Query (field op value; as telemetry statistics -q)" placeholder="project_id=…;metadata.flavor=m1.small">
        <input id="period" type="number" min="1" aria-label="Period (s, empty: automatic)" placeholder="period s" class="narrow">
        <button type="submit">Show</button>
      </form>
      <div class="panel"><div id="mtitle" class="muted">Pick a meter.</div><div id="mchart" class="chart"></div></div>
      <div class="panel scroll"><table id="stats"><thead><tr><th>Period start</th><th class="num">Avg</th><th class="num">Min</th><th class="num">Max</th><th class="num">Sum</th><th class="num">Count</th></tr></thead><tbody></tbody></table></div></section>`));
    const $ = (id) => main.querySelector("#" + id);
    const meters = await api("/v2/meters").catch((e) => { $("mtitle").innerHTML = `<span class="error">${esc(e.message)}</span>`; return []; });
    const names = [...new Set(meters.map((m) => m.name))].sort();
    $("meter").innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
    const meter = p.meter || names[0];
    if (!meter) { $("mtitle").textContent = "No meter has samples yet."; return; }
    $("meter").value = meter;
    const fillResources = () => {
      const rs = [...new Set(meters.filter((m) => m.name === $("meter").value).map((m) => m.resource_id))].sort();
      $("resource").innerHTML = `<option value="">all resources</option>` + rs.map((r) => `<option>${esc(r)}</option>`).join("");
    };
    fillResources();
    $("resource").value = p.resource || "";
    $("mrange").value = p.range || "1h";
    $("period").value = p.period || "";
    $("mq").value = p.q || "";
    $("meter").addEventListener("change", fillResources);
    $("meter-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      go("meters", { meter: $("meter").value, resource: $("resource").value, range: $("mrange").value, period: $("period").value, q: $("mq").value.trim() });
    });

    const secs = RANGES[$("mrange").value] || 3600;
    const period = Number(p.period) || Math.max(60, niceInterval(secs, 60));
    const fields = ["timestamp"], ops = ["ge"], values = [iso(Date.now() - secs * 1000)];
    if (p.resource) { fields.push("resource_id"); ops.push("eq"); values.push(p.resource); }
    for (const part of (p.q || "").split(";").map((x) => x.trim()).filter(Boolean)) {
      const op = OPS.find(([sym]) => part.indexOf(sym) > 0);
      if (!op) { $("mtitle").innerHTML = `<span class="error">bad query term ${esc(part)}: expected field&lt;op&gt;value with op one of = != &lt; &lt;= &gt; &gt;=</span>`; return; }
      const at = part.indexOf(op[0]);
      fields.push(part.slice(0, at).trim()); ops.push(op[1]); values.push(part.slice(at + op[0].length).trim());
    }
    let stats;
    try {
      stats = await api(`/v2/meters/${encodeURIComponent(meter)}/statistics`, { "q.field": fields, "q.op": ops, "q.value": values, period });
    } catch (e) { $("mtitle").innerHTML = `<span class="error">${esc(e.message)}</span>`; return; }
    const unit = stats.length ? stats[0].unit : "";
    $("mtitle").classList.remove("muted");
    $("mtitle").innerHTML = `<strong>${esc(meter)}</strong> ${unit ? `(${esc(unit)})` : ""} ${p.resource ? "on " + esc(p.resource) : "over all resources"}: ${stats.length} periods of ${period} s`;
    $("stats").querySelector("tbody").innerHTML = stats.slice().reverse().map((s) => `<tr><td class="t mono">${esc(shortTime(s.period_start))}</td>
      ${["avg", "min", "max", "sum", "count"].map((k) => `<td class="num">${esc(+(+s[k]).toPrecision(6))}</td>`).join("")}</tr>`).join("");
    const xs = stats.map((s) => Date.parse(s.period_start + (s.period_start.endsWith("Z") ? "" : "Z")) / 1000);
    chart($("mchart"), {
      height: 260,
      scales: { x: { time: true } },
      series: [{}, { label: "max", stroke: "#c62828", width: 1 }, { label: "avg", stroke: "#1f5fbf", width: 2 },
               { label: "min", stroke: "#2e7d32", width: 1 }],
    }, [xs, stats.map((s) => s.max), stats.map((s) => s.avg), stats.map((s) => s.min)]);
    status("");
  });
})();
