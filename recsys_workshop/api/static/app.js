// The workshop UI: plain JavaScript, no framework, no CDN. Talks to the API it is served by.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { userId: null, arm: null, recommendationId: null, picked: new Map() };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "content-type": "application/json" },
    ...options,
  });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `HTTP ${response.status}`);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function sendFeedback(itemId, action, button) {
  try {
    await api("/feedback", {
      method: "POST",
      // the signed id of the list shown: the API accepts feedback only on recommendations it made
      body: JSON.stringify({
        user_id: state.userId, item_id: itemId, action, recommendation_id: state.recommendationId,
      }),
    });
    button.classList.add("done");
    button.disabled = true;
    setStatus(`Thanks: ${action} recorded for film ${itemId}.`);
  } catch (err) {
    setStatus(`Feedback failed: ${err.message}`, true);
  }
}

function renderRecommendations(payload) {
  state.arm = payload.arm;
  state.recommendationId = payload.recommendation_id;
  $("who").textContent = payload.user_id;
  const source = el("span", { class: `badge ${payload.source}` }, payload.source);
  $("meta").replaceChildren(
    "source: ", source,
    ` · arm: ${payload.arm}`,
    payload.model_version != null ? ` · model version ${payload.model_version}` : "",
    payload.fallback_reason ? ` · fallback because: ${payload.fallback_reason}` : "",
  );
  const list = $("recommendations");
  list.replaceChildren();
  for (const item of payload.items) {
    const like = el("button", { type: "button", class: "like", title: "like" }, "Like");
    const dislike = el("button", { type: "button", class: "dislike", title: "dislike" }, "Dislike");
    like.addEventListener("click", () => sendFeedback(item.item_id, "like", like));
    dislike.addEventListener("click", () => sendFeedback(item.item_id, "dislike", dislike));
    list.append(
      el("li", { "data-item-id": item.item_id },
        el("span", { class: "feedback" }, like, " ", dislike),
        el("span", { class: "title" }, item.title), " ",
        el("span", { class: "genres" }, item.genres.join(", ")),
        el("div", { class: "reason" }, item.reason),
      ),
    );
  }
}

function renderHistory(payload) {
  const list = $("history");
  list.replaceChildren();
  if (!payload.liked.length) list.append(el("li", {}, "(nothing yet)"));
  for (const item of payload.liked) {
    list.append(el("li", {}, el("span", { class: "title" }, item.title), " ",
      el("span", { class: "genres" }, item.genres.join(", "))));
  }
}

async function showUser(userId) {
  setStatus(`Loading user ${userId} …`);
  try {
    const [recs, history] = await Promise.all([
      api(`/recommendations/${userId}?k=10`),
      api(`/users/${userId}?limit=10`),
    ]);
    state.userId = userId;
    renderRecommendations(recs);
    renderHistory(history);
    $("result").hidden = false;
    setStatus(`${recs.items.length} recommendations for user ${userId}.`);
  } catch (err) {
    $("result").hidden = true;
    setStatus(err.message, true);
  }
}

async function search(query) {
  try {
    const { items } = await api(`/items?limit=12&q=${encodeURIComponent(query)}`);
    const list = $("search-results");
    list.replaceChildren();
    for (const item of items) {
      const chip = el("li", { "data-item-id": item.item_id }, item.title);
      chip.addEventListener("click", () => { state.picked.set(item.item_id, item.title); renderPicked(); });
      list.append(chip);
    }
  } catch (err) {
    setStatus(err.message, true);
  }
}

function renderPicked() {
  const box = $("picked");
  box.replaceChildren();
  for (const [id, title] of state.picked) {
    const chip = el("span", { title: "click to remove" }, `${title} ✕`);
    chip.addEventListener("click", () => { state.picked.delete(id); renderPicked(); });
    box.append(chip);
  }
}

async function createUser() {
  const body = { liked_item_ids: [...state.picked.keys()] };
  const age = parseInt($("age").value, 10);
  if (!Number.isNaN(age)) body.age = age;
  if ($("gender").value) body.gender = $("gender").value;
  try {
    const { user_id: userId } = await api("/users", { method: "POST", body: JSON.stringify(body) });
    $("user-id").value = userId;
    await showUser(userId);
  } catch (err) {
    setStatus(`Could not create the user: ${err.message}`, true);
  }
}

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showUser(parseInt($("user-id").value, 10));
});
$("random-user").addEventListener("click", () => {
  const userId = 1 + Math.floor(Math.random() * 943);
  $("user-id").value = userId;
  showUser(userId);
});
$("create-user").addEventListener("click", createUser);
let searchTimer = null;
$("search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(event.target.value), 150);
});
search("");
const initial = new URLSearchParams(window.location.search).get("user");
if (initial) { $("user-id").value = initial; showUser(parseInt(initial, 10)); }
