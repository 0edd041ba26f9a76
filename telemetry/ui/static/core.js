/* The console's core: API calls with the bearer token, the hash router, the firing badge.
   Each page file registers itself with Console.page(name, render); render(main, params) draws
   the page and returns nothing; timers it starts go through Console.every so they stop on leave. */
"use strict";
const Console = (() => {
  const pages = {};
  let timers = [];
  let authRequired = false;
  const TOKEN_KEY = "telemetry-token";

  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const el = (html) => { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstElementChild; };
  const qs = (params) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v == null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => u.append(k, x)); else u.append(k, v);
    }
    const s = u.toString();
    return s ? "?" + s : "";
  };

  class ApiError extends Error {}

  async function api(path, params = {}, init = {}) {
    const headers = Object.assign({ Accept: "application/json" }, init.headers || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (init.body && typeof init.body !== "string") { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(init.body); }
    const resp = await fetch(path + qs(params), Object.assign({}, init, { headers }));
    if (resp.status === 401) { login("The token was refused; enter a valid one."); throw new ApiError("a valid token is required"); }
    if (resp.status === 204) return null;
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const fault = body && (body.error_message ? body.error_message.faultstring : body.detail);
      throw new ApiError(fault || `${resp.status} ${resp.statusText}`);
    }
    return body;
  }

  function status(text, bad = false) {
    const s = document.getElementById("status");
    s.textContent = text; s.style.color = bad ? "#ff9b9b" : "";
  }

  function every(ms, fn) { const id = setInterval(fn, ms); timers.push(id); return id; }

  function login(message) {
    const dlg = document.getElementById("login");
    document.getElementById("login-error").textContent = message || "";
    if (!dlg.open) dlg.showModal();
    document.getElementById("login-token").focus();
  }

  async function checkToken(token) {
    const resp = await fetch("/ui/session", { headers: token ? { Authorization: "Bearer " + token } : {} });
    return resp.json();
  }

  function parseHash() {
    const h = location.hash.replace(/^#\/?/, "");
    const [name, query] = h.split("?");
    return { name: name || "logs", params: Object.fromEntries(new URLSearchParams(query || "")) };
  }

  function go(name, params = {}) {
    const hash = "#/" + name + qs(params);
    if (location.hash === hash) route();  // the same search again: no hashchange, so run it here
    else location.hash = hash;
  }

  function route() {
    timers.forEach(clearInterval); timers = [];
    const { name, params } = parseHash();
    const page = pages[name] || pages.logs;
    document.querySelectorAll("nav a").forEach((a) => {
      const on = a.dataset.page === name;
      a.classList.toggle("active", on);
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    const main = document.getElementById("main");
    main.innerHTML = "";
    document.title = `${name[0].toUpperCase()}${name.slice(1)} · telemetry`;
    Promise.resolve(page(main, params)).catch((e) => status(e.message, true));
  }

  async function badge() {
    try {
      const alarms = await api("/v2/alarms");
      const firing = alarms.filter((a) => a.state === "alarm").length;
      const b = document.getElementById("firing");
      b.textContent = firing; b.hidden = firing === 0;
      b.setAttribute("aria-label", `${firing} alarms firing`);
    } catch (e) { /* the rule engine may not run here: no badge */ }
  }

  async function start() {
    document.getElementById("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const token = document.getElementById("login-token").value.trim();
      const s = await checkToken(token);
      if (!s.authenticated) { login("That token is not one of api.tokens."); return; }
      sessionStorage.setItem(TOKEN_KEY, token);
      document.getElementById("login").close();
      boot();
    });
    document.getElementById("login").addEventListener("cancel", (ev) => ev.preventDefault());
    const s = await checkToken(sessionStorage.getItem(TOKEN_KEY));
    authRequired = s.auth_required;
    if (!s.authenticated) { login(); return; }  // nothing renders until a valid token is given
    boot();
  }

  let booted = false;
  function boot() {
    if (booted) { route(); return; }
    booted = true;
    window.addEventListener("hashchange", route);
    route();
    badge();
    setInterval(badge, 10000);
  }

  /* Time helpers shared by the pages. */
  const RANGES = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800 };
  const iso = (d) => new Date(d).toISOString();
  const shortTime = (s) => String(s || "").replace("T", " ").replace(/(\.\d{3})\d*/, "$1").replace(/(Z|\+00:00)$/, "");
  function niceInterval(seconds, buckets = 80) {
    const steps = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    const want = seconds / buckets;
    return steps.find((s) => s >= want) || 86400;
  }
  /* A uPlot chart that follows its container's width. */
  function chart(container, opts, data) {
    const width = Math.max(300, container.clientWidth - 4);
    // Every time on the console is UTC, as in the logs: the axes too, whatever the browser's zone.
    const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
    const u = new uPlot(Object.assign({ width, height: 180, tzDate }, opts), data, container);
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(300, container.clientWidth - 4), height: u.height }));
    ro.observe(container);
    return u;
  }

  return { page: (n, f) => { pages[n] = f; }, api, ApiError, esc, el, qs, go, every, status, start, RANGES, iso,
           shortTime, niceInterval, chart, get authRequired() { return authRequired; } };
})();
