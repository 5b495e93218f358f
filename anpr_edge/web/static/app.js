// anpr-edge installer page: cameras with their live view, recent events and a plate search.
// Plain JavaScript, no dependency, nothing loaded from another host. Data is only ever put into the page
// with textContent and attributes, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 2000;     // cameras and events
  const FRAME_MS = 300;        // live view: next frame this long after the last one arrived
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------ access token
  // ?token=... on the first visit is kept for this tab (sessionStorage) and taken out of the address bar.
  const params = new URLSearchParams(location.search);
  let token = params.get("token") || sessionStorage.getItem("anpr-edge-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("anpr-edge-token", token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }

  function withToken(url) {
    if (!token) return url;
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  async function api(url) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) throw new Error("Access denied: open this page with ?token=<http.token> (or sign in).");
    if (response.status === 403) throw new Error((await response.json()).error);
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const pct = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %");

  // ----------------------------------------------------------------------------------------- cameras
  const cards = new Map(); // camera id -> {node, img, paused, timer, loading, url}

  function stateLabel(state) {
    return state === "streaming" ? "online" : (state || "unknown");
  }

  function scheduleFrame(card, delay) {
    clearTimeout(card.timer);
    card.timer = setTimeout(() => loadFrame(card), delay);
  }

  function loadFrame(card) {
    if (card.paused || document.hidden || !card.url) { scheduleFrame(card, 1000); return; }
    if (card.loading) return;
    card.loading = true;
    const next = new Image();
    next.onload = () => {
      card.loading = false;
      card.img.src = next.src;
      card.img.hidden = false;
      card.noFrame.hidden = true;
      scheduleFrame(card, FRAME_MS);
    };
    next.onerror = () => {  // no frame yet (503), camera gone, or a network hiccup: try again later
      card.loading = false;
      scheduleFrame(card, 1000);
    };
    next.src = withToken(card.url + "?t=" + Date.now());
  }

  function cameraCard(camera) {
    let card = cards.get(camera.id);
    if (card) return card;
    const node = $("camera-template").content.firstElementChild.cloneNode(true);
    node.dataset.camera = camera.id;
    node.querySelector(".camera-id").textContent = camera.id;
    const img = node.querySelector("img.frame");
    img.alt = "live view of camera " + camera.id;
    img.hidden = true;
    card = { node, img, noFrame: node.querySelector(".no-frame"), paused: false, timer: 0, loading: false, url: "" };
    const pause = node.querySelector(".pause");
    pause.addEventListener("click", () => {
      card.paused = !card.paused;
      pause.textContent = card.paused ? "Live" : "Pause";
      pause.setAttribute("aria-pressed", String(card.paused));
    });
    cards.set(camera.id, card);
    $("cameras").appendChild(node);
    return card;
  }

  function renderCameras(answer) {
    $("device").textContent = answer.device || "";
    if (answer.device) document.title = "anpr-edge · " + answer.device;
    $("version").textContent = "v" + answer.version;
    const status = $("status");
    status.textContent = answer.status || "unknown";
    status.className = "pill " + (answer.status || "");
    const mqtt = answer.mqtt ? (answer.mqtt.connected ? "MQTT connected" : "MQTT disconnected") +
      (answer.mqtt.outbox ? ", " + answer.mqtt.outbox + " queued" : "") : "no MQTT";
    const count = answer.events || 0;
    $("summary").textContent = count + (count === 1 ? " event" : " events") + " since start · " + mqtt;

    const seen = new Set();
    for (const camera of answer.cameras) {
      seen.add(camera.id);
      const card = cameraCard(camera);
      const node = card.node;
      node.dataset.state = camera.state || "";
      const badge = node.querySelector(".badge");
      badge.textContent = stateLabel(camera.state);
      badge.className = "badge " + stateLabel(camera.state);
      node.querySelector(".source").textContent = (camera.source || "–") + (camera.kind ? " (" + camera.kind + ")" : "");
      node.querySelector(".fps").textContent = "in " + (camera.fps_in ?? 0) + ", processed " + (camera.fps_processed ?? 0);
      const frame = camera.frame;
      node.querySelector(".frame-info").textContent = frame
        ? frame.width + "×" + frame.height + ", #" + frame.index + ", " + frame.age_s + " s ago"
        : "none yet";
      node.querySelector(".reconnects").textContent = camera.reconnects ?? 0;
      node.querySelector(".dropped").textContent = camera.dropped ?? 0;
      const lastError = node.querySelector(".last-error");
      lastError.textContent = camera.last_error || "none";
      lastError.classList.toggle("none", !camera.last_error);
      const tracks = frame ? frame.tracks : [];
      node.querySelector(".tracks").textContent = tracks.length
        ? tracks.map((t) => "#" + t.id + (t.text ? " " + t.text + " (" + pct(t.confidence) + ")" : "")).join(", ")
        : "no plate";
      const geometry = [];
      geometry.push(camera.roi ? "ROI of " + camera.roi.length + " points" : "no ROI (whole frame)");
      geometry.push(camera.counting_line ? "counting line, in on the " + camera.counting_line.in_side : "no counting line");
      node.querySelector(".geometry").textContent = geometry.join("; ");
      const firstFrame = !card.url;
      card.url = camera.frame_url;
      if (firstFrame) loadFrame(card);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) { clearTimeout(card.timer); card.node.remove(); cards.delete(id); }
    }
    $("no-cameras").hidden = answer.cameras.length > 0;

    const filter = $("camera-filter");
    const known = new Set(Array.from(filter.options).map((o) => o.value));
    for (const camera of answer.cameras) {
      if (!known.has(camera.id)) filter.appendChild(new Option(camera.id, camera.id));
    }
  }

  // ------------------------------------------------------------------------------------------ events
  const shown = new Set(); // event ids already listed (new ones flash)
  let firstList = true;
  let query = { plate: "", camera: "", since: "" };
  let generation = 0;

  function eventsUrl() {
    const search = new URLSearchParams({ limit: "100" });
    if (query.plate) search.set("plate", query.plate);
    if (query.camera) search.set("camera", query.camera);
    if (query.since) search.set("since", String(Date.now() / 1000 - Number(query.since)));
    return "/api/events?" + search.toString();
  }

  function eventRow(event) {
    const row = el("tr");
    row.dataset.id = event.id;
    row.dataset.testid = "event";
    row.setAttribute("data-testid", "event");
    const end = new Date(event.end);
    const time = el("td", "time", end.toLocaleString());
    time.title = event.start + " – " + event.end;
    row.appendChild(time);
    row.appendChild(el("td", "camera", event.camera));
    const crop = el("td", "crop");
    if (event.crop_url) {
      const img = el("img", "crop");
      img.alt = "plate crop " + (event.text || "");
      img.loading = "lazy";
      img.src = withToken(event.crop_url);
      crop.appendChild(img);
    } else {
      crop.textContent = "–";
    }
    row.appendChild(crop);
    const plate = el("td", "plate");
    plate.setAttribute("data-testid", "event-text");
    if (event.text) {
      plate.textContent = event.text;
    } else {
      plate.appendChild(el("span", "reason", event.text_hash ? "hashed" : "not read" + (event.reason ? ": " + event.reason : "")));
    }
    if (event.candidates && event.candidates.length > 1) {
      plate.title = "candidates: " + event.candidates.map((c) => c.text + " " + pct(c.confidence)).join(", ");
    }
    row.appendChild(plate);
    row.appendChild(el("td", "confidence", pct(event.confidence)));
    const direction = event.direction ? (event.direction === "in" ? "→ in" : "← out") : "–";
    const dir = el("td", "direction", direction);
    if (event.angle !== null && event.angle !== undefined) dir.title = "motion " + event.angle + "°";
    row.appendChild(dir);
    row.appendChild(el("td", "reads", event.reads));
    const list = el("td", "list");
    if (event.matched) {
      list.appendChild(el("span", "list-" + event.matched.list, event.matched.list + ": " + event.matched.entry));
    } else {
      list.textContent = "–";
    }
    row.appendChild(list);
    return row;
  }

  function renderEvents(answer) {
    const body = $("events");
    const rows = answer.events.map((event) => {
      const row = eventRow(event);
      if (!firstList && !shown.has(event.id)) row.classList.add("new");
      shown.add(event.id);
      return row;
    });
    firstList = false;
    body.replaceChildren(...rows);
    let line;
    if (!answer.stored) line = "Recent events are not kept on this box (http.events_keep is 0).";
    else if (answer.plate) line = answer.count + " event" + (answer.count === 1 ? "" : "s") + " matching " + answer.plate + ".";
    else if (query.plate) line = "Type letters or digits to search.";
    else line = answer.count ? answer.count + " recent event" + (answer.count === 1 ? "" : "s") + ", newest first." : "No event yet.";
    $("events-status").textContent = line;
  }

  async function refreshEvents() {
    const mine = ++generation;
    const answer = await api(eventsUrl());
    if (mine === generation) renderEvents(answer); // an older answer never overwrites a newer search
  }

  async function refresh() {
    try {
      renderCameras(await api("/api/cameras"));
      await refreshEvents();
      showError("");
    } catch (error) {
      showError(error.message);
      $("status").textContent = "unreachable";
      $("status").className = "pill error";
    }
  }

  function search() {
    query = { plate: $("plate").value.trim(), camera: $("camera-filter").value, since: $("since").value };
    refreshEvents().catch((error) => showError(error.message));
  }

  let typing = 0;
  $("search").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("plate").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(search, 300); });
  $("camera-filter").addEventListener("change", search);
  $("since").addEventListener("change", search);
  $("clear").addEventListener("click", () => {
    $("plate").value = ""; $("camera-filter").value = ""; $("since").value = "";
    search();
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
})();
