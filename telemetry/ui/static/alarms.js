/* Alarms and triggers: state, severity, last change, history; acknowledge a trigger; silences. */
"use strict";
(() => {
  const { api, esc, el, every, status, shortTime } = Console;
  const stateClass = (s) => "state state-" + String(s || "").split(" ")[0];

  async function alarms(box) {
    let list;
    try { list = await api("/v2/alarms"); } catch (e) { box.innerHTML = `<h2>Alarms</h2><p class="error">${esc(e.message)}</p>`; return; }
    const order = { alarm: 0, "insufficient data": 1, ok: 2 };
    list.sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || String(a.name).localeCompare(b.name));
    box.innerHTML = `<h2>Alarms <span class="muted">(${list.length})</span></h2>
      <div class="scroll"><table id="alarm-table"><thead><tr><th>Name</th><th>Type</th><th>State</th><th>Severity</th><th>Enabled</th><th>Last change</th><th></th></tr></thead><tbody>
      ${list.map((a) => `<tr class="alarm" data-id="${esc(a.alarm_id)}"><td>${esc(a.name)}</td><td>${esc(a.type)}</td>
        <td><span class="${stateClass(a.state)}">${esc(a.state)}</span></td><td>${esc(a.severity)}</td><td>${a.enabled ? "yes" : "no"}</td>
        <td class="t mono">${esc(shortTime(a.state_timestamp))}</td>
        <td><button type="button" class="plain small history">History</button></td></tr>`).join("")}
      </tbody></table></div><div id="history"></div>`;
    box.querySelectorAll("button.history").forEach((b) => b.addEventListener("click", async () => {
      const id = b.closest("tr").dataset.id;
      const name = b.closest("tr").firstElementChild.textContent;
      const h = await api(`/v2/alarms/${encodeURIComponent(id)}/history`);
      const hist = box.querySelector("#history");
      hist.innerHTML = `<h3>History of ${esc(name)}</h3><table><thead><tr><th>Time</th><th>Type</th><th>Detail</th></tr></thead><tbody>
        ${h.map((x) => `<tr><td class="t mono">${esc(shortTime(x.timestamp))}</td><td>${esc(x.type)}</td><td class="mono">${esc(x.detail)}</td></tr>`).join("") || '<tr><td colspan="3" class="muted">no changes yet</td></tr>'}
        </tbody></table>`;
      hist.setAttribute("tabindex", "-1"); hist.focus();
    }));
  }

  async function triggers(box) {
    let list;
    try { list = await api("/v1/triggers"); } catch (e) { box.innerHTML = `<h2>Triggers</h2><p class="error">${esc(e.message)}</p>`; return; }
    box.innerHTML = `<h2>Triggers <span class="muted">(${list.filter((t) => t.status === "PROBLEM").length} problems of ${list.length})</span></h2>
      <div class="scroll"><table id="trigger-table"><thead><tr><th>Host</th><th>Name</th><th>Severity</th><th>Status</th><th>Since</th><th>Ack</th><th></th></tr></thead><tbody>
      ${list.map((t) => `<tr class="trigger" data-id="${esc(t.trigger_id)}"><td>${esc(t.host)}</td><td>${esc(t.name)}${t.info ? `<div class="muted">${esc(t.info)}</div>` : ""}</td>
        <td>${esc(t.severity)}</td><td><span class="${stateClass(t.status)}">${esc(t.status)}</span></td>
        <td class="t mono">${esc(shortTime(t.last_change))}</td>
        <td class="acked">${t.acknowledged ? `yes${t.acknowledges && t.acknowledges.length ? ": " + esc(t.acknowledges[t.acknowledges.length - 1].message) : ""}` : "no"}</td>
        <td><button type="button" class="plain small ack">Acknowledge</button></td></tr>`).join("")}
      </tbody></table></div>`;
    box.querySelectorAll("button.ack").forEach((b) => b.addEventListener("click", () => {
      const tr = b.closest("tr");
      const form = el(`<form class="bar ack-form"><input class="wide" name="message" aria-label="Acknowledgement comment" placeholder="Comment (who is on it, why)" required>
        <button type="submit">Acknowledge</button></form>`);
      b.replaceWith(form);
      form.querySelector("input").focus();
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const t = await api(`/v1/triggers/${encodeURIComponent(tr.dataset.id)}/acknowledge`, {},
            { method: "POST", body: { message: form.message.value, user: "console" } });
          tr.querySelector(".acked").textContent = t.acknowledged ? `yes: ${form.message.value}` : "no";
          form.remove();
          status("acknowledged");
        } catch (e) { status(e.message, true); }
      });
    }));
  }

  async function silences(box) {
    let list;
    try { list = await api("/v1/silences"); } catch (e) { box.innerHTML = `<h2>Silences</h2><p class="error">${esc(e.message)}</p>`; return; }
    box.innerHTML = `<h2>Silences</h2>
      <form class="bar" id="silence-form">
        <input class="wide mono" name="matchers" aria-label="Matchers" placeholder="alarm_name=cpu_high, severity=~crit.*" required>
        <select name="hours" aria-label="Duration"><option value="1">1 hour</option><option value="4">4 hours</option><option value="24">1 day</option></select>
        <input name="comment" aria-label="Comment" placeholder="Comment">
        <button type="submit">Silence</button></form>
      <table><thead><tr><th>Matchers</th><th>From</th><th>Until</th><th>Comment</th><th></th></tr></thead><tbody>
      ${list.map((s) => `<tr data-id="${esc(s.id)}"><td class="mono">${s.matchers.map((m) => esc(`${m.name}${m.op}${m.value}`)).join(", ")}</td>
        <td class="t mono">${esc(shortTime(s.starts_at))}</td><td class="t mono">${esc(shortTime(s.ends_at))}</td><td>${esc(s.comment)}</td>
        <td><button type="button" class="plain small del">Delete</button></td></tr>`).join("") || '<tr><td colspan="5" class="muted">none</td></tr>'}
      </tbody></table>`;
    const form = box.querySelector("#silence-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const matchers = form.matchers.value.split(",").map((m) => m.trim()).filter(Boolean);
      const ends = new Date(Date.now() + Number(form.hours.value) * 3600e3).toISOString();
      try {
        await api("/v1/silences", {}, { method: "POST", body: { matchers, ends_at: ends, comment: form.comment.value, created_by: "console" } });
        status("silence created"); silences(box);
      } catch (e) { status(e.message, true); }
    });
    box.querySelectorAll("button.del").forEach((b) => b.addEventListener("click", async () => {
      try { await api(`/v1/silences/${encodeURIComponent(b.closest("tr").dataset.id)}`, {}, { method: "DELETE" }); silences(box); }
      catch (e) { status(e.message, true); }
    }));
  }

  Console.page("alarms", async (main) => {
    main.appendChild(el(`<section aria-label="Alarms and triggers"><div class="panel" id="alarms"></div>
      <div class="panel" id="triggers"></div><div class="panel" id="silences"></div></section>`));
    const a = main.querySelector("#alarms"), t = main.querySelector("#triggers");
    await Promise.all([alarms(a), triggers(t), silences(main.querySelector("#silences"))]);
    status("");
    // Alarm states change within a second of a breach: keep the list current without stealing focus.
    every(5000, () => { if (!a.contains(document.activeElement)) alarms(a); });
  });
})();
