// The message detail pane: the text as the handset shows it, the facts of the message,
// its status timeline, callback attempts, the receipt an SMPP client got, the
// recipient's consent state, its segments as the gateway cut them (the characters that
// forced UCS-2 marked, as the server names them) and the actions on it.

import { call } from "./api.js";
import { h, replace, timeElement } from "./dom.js";

const UNITS = { septets: "septets", utf16_units: "UTF-16 units", octets: "octets" };
const FINAL = ["delivered", "undeliverable", "expired", "rejected", "deleted"];

// A body is kept while the message is scheduled or on its way, and once delivered (the
// handset's inbox, until body_ttl); a message that ended otherwise has none.
function bodyKept(message) {
  return message.status === "delivered" || !FINAL.includes(message.status);
}

function facts(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
}

function hex(value) {
  return `0x${value.toString(16).padStart(2, "0")}`;
}

// One part's text, its characters outside GSM 03.38 (the server's list) marked.
function markedText(text, forcing) {
  const forced = new Set(forcing.map((c) => c.char));
  const runs = [];
  for (const char of Array.from(text)) {
    const mark = forced.has(char);
    const last = runs.at(-1);
    if (last && last.mark === mark) last.text += char;
    else runs.push({ text: char, mark });
  }
  return runs.map((run) => (run.mark ? h("mark", { class: "forced", title: "not in GSM 03.38" }, run.text) : run.text));
}

function segmentsView(segments) {
  const unit = UNITS[segments.unit] || segments.unit;
  const client = segments.client_part;
  return [
    h(
      "p",
      { class: "muted" },
      `${segments.count} part${segments.count === 1 ? "" : "s"}, ${segments.units} ${unit}`,
      segments.udh_octets ? `, ${segments.udh_octets}-octet concatenation UDH each` : "",
      client ? ` · this message is part ${client.seq} of ${client.total} (UDH/SAR reference ${client.ref})` : "",
    ),
    segments.forcing_ucs2.length
      ? h(
          "p",
          {},
          "Forced UCS-2 by: ",
          segments.forcing_ucs2.map((c) => h("mark", { class: "forced" }, c.char, " ", h("small", {}, c.code_point))),
        )
      : null,
    h(
      "ol",
      { class: "segments", "aria-label": "Segments" },
      segments.segments.map((part) =>
        h(
          "li",
          { class: "segment" },
          h(
            "p",
            { class: "segment-head" },
            h("strong", {}, `Part ${part.seq} of ${part.total}`),
            ` · ${part.characters} characters, ${part.units} ${unit}`,
          ),
          h("p", { class: "segment-text" }, markedText(part.text, part.forcing_ucs2)),
        ),
      ),
    ),
  ];
}

function timelineView(timeline) {
  return h(
    "ol",
    { class: "timeline", "aria-label": "Timeline" },
    timeline.map((step) =>
      h("li", {}, h("span", { class: `status ${step.status}` }, step.status), " ", timeElement(step.at), step.error ? ` · ${step.error}` : ""),
    ),
  );
}

function callbacksView(callbacks) {
  if (!callbacks.callback_url) return h("p", { class: "muted" }, "Sent without a callback_url.");
  if (!callbacks.attempts.length) return h("p", { class: "muted" }, "No attempt yet.");
  return h(
    "ol",
    { class: "timeline", "aria-label": "Callback attempts" },
    callbacks.attempts.map((a) =>
      h("li", {}, `#${a.attempt} `, timeElement(a.at), ` · ${a.http_status === null ? "no answer" : `HTTP ${a.http_status}`}`, a.error ? ` · ${a.error}` : ""),
    ),
  );
}

function consentView(session, consent) {
  const purposes = consent.consents.map((event) => event.purpose).join(", ");
  const history = h("ol", { class: "history" });
  const button = h("button", { type: "button" }, "Show history");
  button.addEventListener("click", async () => {
    const found = await call(session, "GET", consent.history_url);
    replace(
      history,
      found.history.map((event) =>
        h(
          "li",
          {},
          timeElement(event.at),
          ` ${event.kind}`,
          event.purpose ? ` · ${event.purpose}` : "",
          event.sender ? ` · ${event.sender}` : "",
          ` · ${event.source}`,
          event.evidence ? ` · ${event.evidence}` : "",
        ),
      ),
    );
    button.hidden = true;
  });
  return h(
    "section",
    { class: "consent", "aria-label": "Consent" },
    h("h3", {}, "Consent"),
    facts([
      ["Opted out", consent.opted_out ? "yes" : "no"],
      ["Restricted", consent.restricted ? "yes" : "no"],
      ["Consented to", purposes || "nothing recorded"],
      ["Pseudonym", consent.subject],
    ]),
    button,
    history,
  );
}

function actionsView(session, message, refresh) {
  const status = h("p", { class: "error", role: "alert" });
  async function run(path, body) {
    status.textContent = "";
    try {
      await call(session, "POST", path, body);
      await refresh();
    } catch (error) {
      status.textContent = error.message;
    }
  }
  const buttons = [];
  if (!FINAL.includes(message.status)) {
    for (const [label, outcome] of [["Deliver now", "delivered"], ["Fail", "failed"], ["Expire", "expired"]]) {
      buttons.push(h("button", { type: "button", onclick: () => run(`/v1/messages/${message.id}/outcome`, { outcome }) }, label));
    }
  } else if (message.callback_url) {
    buttons.push(h("button", { type: "button", onclick: () => run(`/v1/messages/${message.id}/callbacks`) }, "Re-send callback"));
  }
  if (!buttons.length) return null;
  return h("section", { "aria-label": "Actions" }, h("h3", {}, "Actions"), h("div", { class: "buttons" }, buttons), status);
}

// ``shown``: the text as the handset shows it (a thread item's body, parts joined), if known.
export async function showMessage(session, id, shown, into) {
  const detail = await call(session, "GET", `/v1/messages/${id}/detail`);
  const message = detail.message;
  // Only while a body is kept are there segments to ask for (else a 410 body_gone); a
  // refresh after "Fail" or "Expire" finds the shown body gone.
  const text = bodyKept(message) ? (shown ?? null) : null;
  const segments = text !== null ? await call(session, "GET", detail.segments_url) : null;
  const refresh = () => showMessage(session, id, shown, into);
  replace(
    into,
    h("h3", {}, "Text"),
    text === null
      ? h("p", { class: "muted" }, "The body is no longer kept (privacy.body_ttl).")
      : h("p", { class: "handset-text" }, text),
    detail.pseudonym
      ? h("p", { class: "note" }, `Pseudonymised: the number is gone; ${detail.pseudonym.pseudonym} stands for it.`)
      : null,
    facts([
      ["Id", message.id],
      ["Status", message.status],
      ["Error", message.error],
      ["From", message.from],
      ["To", message.to],
      ["Interface", message.interface],
      ["Purpose", message.purpose],
      ["Encoding", { gsm7: "GSM 03.38", ucs2: "UCS-2", binary: "8-bit data" }[message.encoding]],
      ["data_coding", hex(detail.data_coding)],
      ["Message class", message.class === null ? "none" : String(message.class)],
      ["Flash", message.flash ? "yes" : "no"],
      ["Segments", String(message.segments)],
      ["Client ref", message.client_ref],
    ]),
    actionsView(session, message, refresh),
    h("h3", {}, "Timeline"),
    timelineView(detail.timeline),
    h("h3", {}, "Callback"),
    callbacksView(detail.callbacks),
    detail.receipt
      ? [h("h3", {}, "Receipt the SMPP client got"), h("p", { class: "receipt" }, detail.receipt.short_message)]
      : null,
    h("h3", {}, "Segments"),
    segments ? segmentsView(segments) : h("p", { class: "muted" }, "No body kept, so no parts to show."),
    detail.consent ? consentView(session, detail.consent) : null,
  );
}

export async function showReply(session, item, into) {
  const consent = await call(session, "GET", `/v1/consents/${encodeURIComponent(item.from)}`);
  replace(
    into,
    h("h3", {}, "Text"),
    item.body === null ? h("p", { class: "muted" }, "No longer kept.") : h("p", { class: "handset-text" }, item.body),
    facts([
      ["Id", item.id],
      ["From (handset)", item.from],
      ["To", item.to],
      ["Keyword", item.keyword],
      ["Received", timeElement(item.received_at)],
    ]),
    consentView(session, { ...consent, history_url: `/v1/consents/${encodeURIComponent(item.from)}` }),
  );
}

export function showBlocked(item, into) {
  replace(
    into,
    h("p", {}, "This submit was refused before anything was stored: no body is kept."),
    facts([
      ["Refused with", item.code],
      ["From", item.from],
      ["To", item.to],
      ["Interface", item.interface],
      ["At", timeElement(item.at)],
    ]),
  );
}
