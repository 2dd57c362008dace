// The cinegen web page: one form, a gallery that polls the API, and videos fetched with the
// API key (a <video src> cannot send an Authorization header, so each is played from a blob).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const blobs = new Map(); // video id -> object URL of its mp4, fetched once
let task = "generate";

// --- API key: from the URL fragment (never sent to the server) or the key box; kept locally.
function apiKey() { return localStorage.getItem("cinegen-key") || ""; }
function takeKeyFromFragment() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    localStorage.setItem("cinegen-key", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  $("#api-key").value = apiKey();
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try { message = (await res.json()).error.message; } catch (_) { /* not JSON */ }
    if (res.status === 401) $("#key-box").open = true;
    throw new Error(message);
  }
  return res;
}

function say(text, isError = false) {
  const el = $("#message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// --- task tabs (WAI-ARIA tabs pattern: arrow keys move, Home/End jump)
function selectTab(tab, focus = false) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
  }
  if (focus) tab.focus();
  task = tab.dataset.task;
  $("#task-inputs").setAttribute("aria-labelledby", tab.id);
  for (const field of document.querySelectorAll("#task-inputs .field")) {
    field.hidden = !field.dataset.for.split(" ").includes(task);
  }
  const videoLabel = $("label[for=video]");
  videoLabel.dataset.source ||= videoLabel.textContent;
  videoLabel.textContent = task === "connect" ? videoLabel.dataset.connect : videoLabel.dataset.source;
  // A task with an input follows its aspect unless one is chosen: a fixed 16:9 refused every
  // image of another shape (the API asks for the video's aspect) and cropped every such video.
  const takesInput = ["image", "edit", "extend", "connect"].includes(task);
  const aspect = $("#aspect");
  $("#aspect-input").hidden = !takesInput;
  if (takesInput && !aspect.dataset.chosen) aspect.value = "";
  if (!takesInput && aspect.value === "") aspect.value = "16:9";
}
function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      selectTab(tabs[(next + tabs.length) % tabs.length], true);
    });
  });
  selectTab(tabs[0]);
}

// --- creating jobs
function formBody() {
  const form = new FormData();
  const value = (id) => $("#" + id).value.trim();
  form.append("prompt", value("prompt"));
  form.append("task", task === "image" ? "generate" : task);
  for (const id of ["aspect", "resolution", "seconds", "seed", "steps", "guidance", "fps", "negative_prompt"]) {
    if (value(id) !== "") form.append(id, value(id));
  }
  form.append("draft", $("#draft").checked ? "true" : "false");
  if (task === "image") addFile(form, "image");
  if (task === "edit") {
    addFile(form, "video");
    if ($("#mask").files[0]) addFile(form, "mask");
    // Empty: the server's default, as the CLI's (1 with a mask: the masked part is drawn anew).
    if (value("strength") !== "") form.append("strength", value("strength"));
  }
  if (task === "connect") { addFile(form, "video"); addFile(form, "video_b"); }
  if (task === "extend") { addFile(form, "video"); form.append("backward", $("#backward").checked ? "true" : "false"); }
  return form;
}
function addFile(form, id) {
  const file = $("#" + id).files[0];
  if (!file) throw new Error("choose a file for " + $("label[for=" + id + "]").textContent);
  form.append(id, file);
}

async function create(e) {
  e.preventDefault();
  const button = $("#submit");
  button.disabled = true;
  try {
    const res = await api("/v1/videos", {
      method: "POST", body: formBody(), headers: { "Idempotency-Key": crypto.randomUUID() },
    });
    const video = await res.json();
    say("Queued " + video.id);
    await refresh();
  } catch (err) {
    say(err.message, true);
  } finally {
    button.disabled = false;
  }
}

async function followUp(video, act) {
  try {
    let path = "/v1/videos/" + video.id + "/" + act, body = {};
    if (act === "remix") {
      const prompt = $("#prompt").value.trim();
      if (!prompt) { say("Type the new prompt in the prompt box, then press Remix", true); $("#prompt").focus(); return; }
      body = { prompt };
    } else if (act === "extend") {
      body = { seconds: Number($("#seconds").value) || video.seconds };
    } else if (act === "delete") {
      await api("/v1/videos/" + video.id, { method: "DELETE" });
      await refresh();
      return;
    }
    await api(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    say(act + " queued");
    await refresh();
  } catch (err) {
    say(err.message, true);
  }
}

// --- gallery
const cards = new Map(); // id -> <li>
function renderCard(video) {
  let card = cards.get(video.id);
  if (!card) {
    card = $("#card").content.firstElementChild.cloneNode(true);
    card.dataset.id = video.id;
    card.querySelector(".prompt").textContent = video.prompt;
    for (const b of card.querySelectorAll("[data-act]")) {
      b.addEventListener("click", () => followUp(video, b.dataset.act));
    }
    cards.set(video.id, card);
  }
  const done = video.status === "completed";
  const active = video.status === "queued" || video.status === "in_progress";
  card.dataset.status = video.status;
  card.querySelector(".status").textContent = video.error
    ? video.status + ": " + video.error.message
    : video.status + (active ? " " + Math.round(video.progress * 100) + "%" : "");
  const bar = card.querySelector("progress");
  bar.value = video.progress;
  bar.hidden = !active;
  bar.setAttribute("aria-label", "progress of " + video.prompt);
  for (const b of card.querySelectorAll("[data-act]")) {
    b.hidden = b.dataset.act !== "delete" && !done;
    if (b.dataset.act === "delete") b.textContent = active ? "Cancel" : "Delete";
    // Labelled after the text is set: labelled once, a running job's Cancel was read out as "Delete".
    b.setAttribute("aria-label", b.textContent + ": " + video.prompt);
  }
  const player = card.querySelector("video");
  player.setAttribute("aria-label", video.prompt);
  player.hidden = !done;
  const link = card.querySelector(".download");
  link.hidden = !done;
  if (done && !blobs.has(video.id)) {
    blobs.set(video.id, null); // fetching
    api("/v1/videos/" + video.id + "/content").then((r) => r.blob()).then((blob) => {
      const url = URL.createObjectURL(blob);
      blobs.set(video.id, url);
      player.src = url;
      link.href = url;
      link.download = video.id + ".mp4";
      player.play().catch(() => { /* autoplay may be refused; controls remain */ });
    }).catch((err) => { blobs.delete(video.id); say(err.message, true); });
  }
  if (video.has_draft && !done && !card.dataset.draft) {
    card.dataset.draft = "1";
    api("/v1/videos/" + video.id + "/content?variant=draft").then((r) => r.blob()).then((blob) => {
      player.src = URL.createObjectURL(blob);
      player.hidden = false;
    }).catch(() => { delete card.dataset.draft; });
  }
  return card;
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  let anyActive = false;
  try {
    const list = await (await api("/v1/videos?limit=50")).json();
    const gallery = $("#gallery");
    const seen = new Set();
    list.data.forEach((video, i) => {
      seen.add(video.id);
      anyActive ||= video.status === "queued" || video.status === "in_progress";
      const card = renderCard(video);
      if (gallery.children[i] !== card) gallery.insertBefore(card, gallery.children[i] || null);
    });
    for (const [id, card] of cards) {
      if (!seen.has(id)) { card.remove(); cards.delete(id); }
    }
  } catch (err) {
    say(err.message, true);
  }
  timer = setTimeout(refresh, anyActive ? 1000 : 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  takeKeyFromFragment();
  $("#save-key").addEventListener("click", () => {
    localStorage.setItem("cinegen-key", $("#api-key").value.trim());
    $("#key-box").open = false;
    refresh();
  });
  $("#aspect").addEventListener("change", () => { $("#aspect").dataset.chosen = "1"; });
  setupTabs();
  $("#create").addEventListener("submit", create);
  refresh();
});
