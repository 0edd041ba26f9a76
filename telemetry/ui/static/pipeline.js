/* Pipeline: the components with their state, and live rates per stage from two readings of /v1/pipeline. */
"use strict";
(() => {
  const { api, esc, el, every, status, chart } = Console;
  const WINDOW = 100;  // readings kept for the chart (5 minutes at one every 3 s)

  Console.page("pipeline", async (main) => {
    main.appendChild(el(`<section aria-label="Pipeline"><div class="grid2">
      <div class="panel scroll tall"><h2>Components</h2><table id="components"><thead><tr><th>Component</th><th>State</th><th>Details</th></tr></thead><tbody></tbody></table></div>
      <div class="panel"><h2>Stages <span class="muted">(records per second, refreshed every 3 s)</span></h2>
        <table id="stages"><thead><tr><th>Stage</th><th>In/s</th><th>Out/s</th><th>Rejected/s</th><th>Rejected total</th></tr></thead><tbody></tbody></table>
        <h3>Bus</h3><table id="topics"><thead><tr><th>Topic</th><th>Published/s</th><th>Consumed/s</th><th>Redelivered/s</th></tr></thead><tbody></tbody></table>
        <div id="spool" class="muted"></div>
        <h3>Records in per stage, per second</h3><div id="pchart" class="chart"></div></div></div></section>`));
    const $ = (id) => main.querySelector("#" + id);
    let prev = null, plot = null;
    const history = { t: [], stages: {} };

    const details = (h) => Object.entries(h).filter(([k]) => !["state", "restarts"].includes(k))
      .map(([k, v]) => `${esc(k)}: ${esc(typeof v === "object" ? JSON.stringify(v) : v)}`).join("; ");

    async function tick() {
      let snap;
      try { snap = await api("/v1/pipeline"); } catch (e) { status(e.message, true); return; }
      $("components").querySelector("tbody").innerHTML = Object.entries(snap.components).map(([n, h]) =>
        `<tr><td>${esc(n)}</td><td><span class="state state-${esc(h.state)}">${esc(h.state)}</span>${h.problem ? `<div class="error">${esc(h.problem)}</div>` : ""}</td>
         <td class="mono small">${details(h)}</td></tr>`).join("");
      if (prev) {
        const dt = Math.max(0.001, snap.time - prev.time);
        const rate = (now, then, k) => ((now[k] - ((then || {})[k] || 0)) / dt);
        $("stages").querySelector("tbody").innerHTML = Object.entries(snap.stages).sort().map(([n, s]) =>
          `<tr class="stage" data-stage="${esc(n)}"><td>${esc(n)}</td>${["records_in", "records_out", "rejected"].map((k) =>
            `<td class="num">${rate(s, prev.stages[n], k).toFixed(1)}</td>`).join("")}<td class="num">${s.rejected}</td></tr>`).join("");
        $("topics").querySelector("tbody").innerHTML = Object.entries(snap.topics).sort().map(([n, s]) =>
          `<tr><td>${esc(n)}</td>${["published", "consumed", "redelivered"].map((k) => `<td class="num">${rate(s, prev.topics[n], k).toFixed(1)}</td>`).join("")}</tr>`).join("");
        const lag = Object.entries(snap.bus).map(([k, v]) => `${esc(k)} ${v}`).join(", ");
        $("spool").textContent = `Agent spool: ${snap.spool.bytes} bytes in ${snap.spool.batches} batches. ${lag ? "Bus: " + lag : ""}`;
        history.t.push(snap.time);
        for (const n of Object.keys(snap.stages)) {
          const arr = history.stages[n] || (history.stages[n] = new Array(history.t.length - 1).fill(null));
          arr.push(rate(snap.stages[n], prev.stages[n], "records_in"));
        }
        for (const arr of Object.values(history.stages)) while (arr.length < history.t.length) arr.push(null);
        if (history.t.length > WINDOW) { history.t.shift(); Object.values(history.stages).forEach((a) => a.shift()); }
        const names = Object.keys(history.stages).sort();
        const data = [history.t, ...names.map((n) => history.stages[n])];
        const palette = ["#1f5fbf", "#c62828", "#2e7d32", "#b26a00", "#6a1b9a", "#00838f", "#5d4037"];
        if (!plot || plot.series.length !== names.length + 1) {
          $("pchart").innerHTML = "";
          plot = chart($("pchart"), { height: 200, scales: { x: { time: true } },
            series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 1.5 }))] }, data);
        } else plot.setData(data);
      } else {
        $("stages").querySelector("tbody").innerHTML = `<tr><td colspan="5" class="muted">measuring…</td></tr>`;
      }
      prev = snap;
      status(`updated ${new Date().toISOString().slice(11, 19)}`);
    }
    await tick();
    every(3000, tick);
  });
})();
