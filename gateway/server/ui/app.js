// The web inbox: sign-in, the handsets and their threads, search, live updates.
// Every body is set as text (dom.js); every request goes to this gateway only.

import { ApiError, call, dropSession, loadSession, openStream, query, saveSession, signIn } from "./api.js";
import { showBlocked, showMessage, showReply } from "./detail.js";
import { showOperator } from "./operator.js";
import { $, h, replace, time, timeElement } from "./dom.js";

const SEEN = "smsgw.seen"; // per tenant and handset: how many messages were seen
const TITLE = "smsgw inbox";
// The errors of a message a privacy gate stopped on its way (the server's BLOCKED_ERRORS).
const BLOCKED_ERRORS = ["opted_out", "consent_withdrawn", "processing_restricted"];

const state = {
  session: null,
  stream: null,
  view: "handsets",
  handsets: [],
  current: null, // the open handset's number
  items: [], // the open thread's items
  unseenBlocked: new Map(), // handset -> refused submits seen on the stream, not yet looked at
  cursor: null, // the flat list's next page
  paged: false, // the flat list shows more than its first page
  refreshing: null,
  renderDetail: null, // fills the open detail pane
};

function seen() {
  try {
    return JSON.parse(sessionStorage.getItem(SEEN)) || {};
  } catch {
    return {};
  }
}

function seenKey(msisdn) {
  return `${state.session.tenant || "-"} ${msisdn}`;
}

// What the handset list counts for a handset: the tenant's messages to it and its MO.
function total(handset) {
  return handset.counts.messages + handset.counts.sent;
}

function unread(handset) {
  return Math.max(0, total(handset) - (seen()[seenKey(handset.msisdn)] || 0)) + (state.unseenBlocked.get(handset.msisdn) || 0);
}

function markSeen(msisdn) {
  const handset = state.handsets.find((x) => x.msisdn === msisdn);
  if (!handset) return;
  const all = seen();
  all[seenKey(msisdn)] = total(handset);
  sessionStorage.setItem(SEEN, JSON.stringify(all));
  state.unseenBlocked.delete(msisdn);
}

function updateTitle() {
  const count = state.handsets.reduce((sum, handset) => sum + unread(handset), 0);
  document.title = count ? `(${count}) ${TITLE}` : TITLE;
}

function showError(where, error) {
  $(where).textContent = error instanceof Error ? error.message : String(error);
}

// --- sign-in ------------------------------------------------------------------------

async function onSignIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    state.session = await signIn($("key").value.trim(), $("as-operator").checked);
  } catch (error) {
    showError("sign-in-error", error instanceof ApiError && error.status === 401 ? "That key is not known here." : error);
    return;
  }
  $("key").value = "";
  saveSession(state.session);
  enter();
}

function enter() {
  const session = state.session;
  $("sign-in").hidden = true;
  $("tabs").hidden = false;
  $("who").hidden = false;
  $("identity").textContent = session.operator ? "operator" : "tenant key";
  $("tenant-pick").hidden = !session.operator;
  // An operator reads a tenant's inbox and changes nothing of it (403 operator_read_only).
  for (const control of [$("reply"), $("clear-handset"), $("reset")]) control.hidden = session.operator;
  $("operator-tab").hidden = !session.operator;
  if (session.operator) {
    replace($("tenant"), session.tenants.map((id) => h("option", { value: id, selected: id === session.tenant }, id)));
  }
  showView(state.view);
  startStream();
  act(refreshHandsets);
}

function signOut() {
  state.stream?.stop();
  dropSession();
  sessionStorage.removeItem(SEEN);
  location.reload();
}

function startStream() {
  state.stream?.stop();
  state.stream = openStream(state.session, onEvent, (live) => {
    $("live").textContent = live;
    $("live").dataset.state = live;
  });
}

function switchTenant() {
  state.session.tenant = $("tenant").value;
  saveSession(state.session);
  state.current = null;
  state.unseenBlocked.clear();
  $("thread").hidden = true;
  closeDetail();
  startStream();
  act(refreshHandsets);
  if (state.view === "messages") act(search);
  if (state.view === "operator") showView("operator");
}

// --- views --------------------------------------------------------------------------

function showView(view) {
  state.view = view;
  for (const button of $("tabs").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  $("handsets-view").hidden = view !== "handsets";
  $("messages-view").hidden = view !== "messages";
  $("operator-view").hidden = view !== "operator";
  if (view === "operator") act(() => showOperator(state.session, $("operator-body"), state.session.tenant));
  if (view === "messages" && !$("results").childElementCount) act(search);
}

// --- handsets and threads -----------------------------------------------------------

async function refreshHandsets() {
  const { handsets } = await call(state.session, "GET", "/v1/simulator/handsets");
  state.handsets = handsets;
  if (state.current) markSeen(state.current);
  renderHandsets();
  updateTitle();
}

function renderHandsets() {
  $("no-handsets").hidden = state.handsets.length > 0;
  replace(
    $("handsets"),
    state.handsets.map((handset) => {
      const count = unread(handset);
      const latest = handset.latest;
      const preview = latest ? latest.body : "(no body kept)";
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "handset",
            "aria-current": handset.msisdn === state.current ? "true" : false,
            "aria-label": `${handset.msisdn}${count ? `, ${count} unread` : ""}`,
            dataset: { msisdn: handset.msisdn },
            onclick: () => act(() => openThread(handset.msisdn)),
          },
          h("span", { class: "number" }, handset.msisdn),
          count ? h("span", { class: "badge unread", "aria-hidden": "true" }, String(count)) : null,
          h("span", { class: "preview" }, latest?.direction === "mo" ? "↩ " : "", preview),
          h("span", { class: "when muted" }, time(handset.last_activity_at)),
        ),
      );
    }),
  );
}

async function openThread(msisdn) {
  state.current = msisdn;
  $("thread").hidden = false;
  $("handsets-view").classList.add("has-thread");
  $("thread-title").textContent = msisdn;
  closeDetail();
  await refreshThread();
  markSeen(msisdn);
  renderHandsets();
  updateTitle();
  $("bubbles").querySelector(".bubble:last-child")?.focus();
}

function closeThread() {
  state.current = null;
  $("thread").hidden = true;
  $("handsets-view").classList.remove("has-thread");
  renderHandsets();
  $("handsets").querySelector("button")?.focus();
}

async function refreshThread() {
  const msisdn = state.current;
  if (!msisdn) return;
  const thread = await call(state.session, "GET", `/v1/simulator/handsets/${encodeURIComponent(msisdn)}/thread`);
  if (msisdn !== state.current) return;
  state.items = thread.items; // refused submits too: the gateway keeps them in memory
  const lastSent = [...thread.items].reverse().find((item) => item.direction === "mt");
  if (lastSent && !$("reply-to").value) $("reply-to").value = lastSent.from;
  renderThread();
}

function bubble(item, index) {
  const mine = item.direction !== "mo";
  const blocked = item.direction === "blocked" || BLOCKED_ERRORS.includes(item.error);
  const label = item.direction === "mo" ? "Reply" : item.direction === "blocked" ? "Refused message" : "Message";
  const body =
    item.direction === "blocked"
      ? h("p", { class: "muted" }, "not sent: ", item.code)
      : item.body === null
        ? h("p", { class: "muted" }, "(body not kept)")
        : h("p", { class: "text" }, item.body);
  return h(
    "li",
    {
      class: `bubble ${mine ? "mt" : "mo"}${blocked ? " blocked" : ""}`,
      tabindex: "-1",
      "aria-label": label,
      dataset: { index: String(index), id: item.id || "", direction: item.direction },
      onclick: () => act(() => openItem(index)),
    },
    body,
    h(
      "p",
      { class: "meta" },
      timeElement(item.at),
      item.direction === "mt" ? h("span", { class: `status ${item.status}` }, item.status) : null,
      item.direction === "mt" && item.segments > 1 ? h("span", { class: "muted" }, `${item.segments} parts`) : null,
      item.direction === "mt" ? h("span", { class: "muted" }, item.interface) : null,
      item.keyword ? h("span", { class: "badge keyword" }, item.keyword.toUpperCase()) : null,
      blocked ? h("span", { class: "badge blocked-badge" }, "blocked") : null,
    ),
  );
}

function renderThread() {
  const list = $("bubbles");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  const focused = document.activeElement?.dataset?.index;
  replace(list, state.items.map(bubble));
  if (focused !== undefined) list.querySelector(`[data-index="${focused}"]`)?.focus();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function openItem(index) {
  const item = state.items[index];
  if (!item) return;
  const into = $("detail-body");
  if (item.direction === "mo") await openDetail(() => showReply(state.session, item, into));
  else if (item.direction === "blocked") await openDetail(() => showBlocked(item, into));
  else await openDetail(() => showMessage(state.session, item.id, item.body, into));
}

// Show the detail pane; ``render`` fills it, again on Refresh (callback attempts and
// the like are not on the event stream).
async function openDetail(render) {
  $("detail").hidden = false;
  state.renderDetail = render;
  try {
    await render();
  } catch (error) {
    replace($("detail-body"), h("p", { class: "error" }, error.message));
  }
  $("close-detail").focus();
}

function closeDetail() {
  $("detail").hidden = true;
  replace($("detail-body"));
}

async function reply(body) {
  $("reply-error").textContent = "";
  try {
    await call(state.session, "POST", "/v1/simulator/inbound", {
      from: state.current,
      to: $("reply-to").value.trim(),
      body,
    });
    $("reply-body").value = "";
  } catch (error) {
    showError("reply-error", error);
  }
}

// Run a page action; a refusal (e.g. 403 reset_disabled) is shown, not thrown.
async function act(action) {
  $("notice").textContent = "";
  try {
    await action();
  } catch (error) {
    showError("notice", error);
  }
}

function clearHandset() {
  if (!state.current || !confirm(`Delete the messages ${state.current} received?`)) return;
  act(async () => {
    await call(state.session, "DELETE", `/v1/simulator/handsets/${encodeURIComponent(state.current)}/messages`);
    await refreshThread();
  });
}

function resetTenant() {
  if (!confirm("Reset this tenant's simulator: inboxes, replies, kept notices, messages on their way?")) return;
  act(async () => {
    await call(state.session, "POST", "/v1/simulator/reset", {});
    state.unseenBlocked.clear();
    await refreshHandsets();
    await refreshThread();
  });
}

// --- search (the flat list) ---------------------------------------------------------

function searchParams(form) {
  const data = new FormData(form);
  const at = (name) => (data.get(name) ? new Date(data.get(name)).toISOString() : "");
  return {
    to: data.get("to").trim(),
    q: data.get("q").trim(),
    status: data.get("status"),
    interface: data.get("interface"),
    encoding: data.get("encoding"),
    multipart: data.get("multipart") ? "true" : "",
    blocked: data.get("blocked") ? "true" : "",
    since: at("since"),
    until: at("until"),
  };
}

async function search(cursor = null) {
  const params = { ...searchParams($("search")), limit: 50, cursor };
  const page = await call(state.session, "GET", `/v1/simulator/messages${query(params)}`);
  const rows = page.messages.map((message) =>
    h(
      "tr",
      { tabindex: "-1", dataset: { id: message.id }, onclick: () => act(() => openFound(message.id, message.body)) },
      h("td", {}, timeElement(message.submitted_at)),
      h("td", {}, message.to),
      h("td", {}, h("span", { class: `status ${message.status}` }, message.status), message.error ? ` (${message.error})` : ""),
      h("td", {}, `${message.interface} · ${message.encoding}${message.segments > 1 ? ` · ${message.segments} parts` : ""}`),
      h("td", { class: "text" }, message.body ?? h("span", { class: "muted" }, "(not kept)")),
    ),
  );
  if (cursor) $("results").append(...rows);
  else replace($("results"), rows);
  $("results-caption").textContent = `${$("results").childElementCount} message(s)`;
  state.cursor = page.next_cursor;
  state.paged = Boolean(cursor);
  $("next-page").hidden = !page.next_cursor;
}

function openFound(id, body) {
  return openDetail(() => showMessage(state.session, id, body, $("detail-body")));
}

// --- live updates -------------------------------------------------------------------

function schedule() {
  // Events come in bursts (accepted, enroute, delivered): one refresh per burst.
  if (state.refreshing) return;
  state.refreshing = setTimeout(() => {
    state.refreshing = null;
    act(async () => {
      await refreshHandsets();
      await refreshThread();
      // The flat list follows too, unless the user paged on (a reload would lose the pages).
      if (state.view === "messages" && !state.paged) await search();
    });
  }, 50);
}

function onEvent(type, data) {
  if (type === "message.blocked") {
    if (data.to !== state.current) state.unseenBlocked.set(data.to, (state.unseenBlocked.get(data.to) || 0) + 1);
    schedule();
    return;
  }
  if (type === "message.status") {
    const shown = $("bubbles").querySelector(`[data-id="${CSS.escape(data.message_id)}"] .status`);
    if (shown) {
      shown.textContent = data.status;
      shown.className = `status ${data.status}`;
    }
  }
  if (["message.accepted", "message.status", "handset.received", "mo.received", "gap"].includes(type)) schedule();
}

// --- keyboard: j/k to move, Enter to open, Esc to close -----------------------------

function rows() {
  if (!$("detail").hidden) return [];
  if (state.view === "messages") return [...$("results").querySelectorAll("tr")];
  if (state.current) return [...$("bubbles").querySelectorAll(".bubble")];
  return [...$("handsets").querySelectorAll("button")];
}

function onKey(event) {
  if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape") {
    if (!$("detail").hidden) closeDetail();
    else if (state.current) closeThread();
    return;
  }
  const list = rows();
  if (!list.length) return;
  const at = list.indexOf(document.activeElement);
  if (event.key === "j" || event.key === "k") {
    const next = event.key === "j" ? Math.min(list.length - 1, at + 1) : Math.max(0, at < 0 ? 0 : at - 1);
    list[next].focus();
    list[next].scrollIntoView({ block: "nearest" });
    event.preventDefault();
  } else if (event.key === "Enter" && at >= 0 && list[at].tagName !== "BUTTON") {
    list[at].click();
    event.preventDefault();
  }
}

// --- wiring -------------------------------------------------------------------------

function main() {
  $("sign-in").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", signOut);
  $("reset").addEventListener("click", resetTenant);
  $("tenant").addEventListener("change", switchTenant);
  $("back").addEventListener("click", closeThread);
  $("close-detail").addEventListener("click", closeDetail);
  $("refresh-detail").addEventListener("click", () => act(state.renderDetail));
  $("clear-handset").addEventListener("click", clearHandset);
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    act(search);
  });
  $("next-page").addEventListener("click", () => act(() => search(state.cursor)));
  $("reply").addEventListener("submit", (event) => {
    event.preventDefault();
    reply($("reply-body").value);
  });
  for (const button of $("reply").querySelectorAll("[data-keyword]")) {
    button.addEventListener("click", () => reply(button.dataset.keyword));
  }
  for (const button of $("tabs").querySelectorAll("button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  document.addEventListener("keydown", onKey);
  state.session = loadSession();
  if (state.session) enter();
  else $("key").focus();
}

main();
