// The message detail pane: the text as the handset shows it, the facts of the message,
// and its segments as the gateway cut them (the characters that forced UCS-2 marked).

import { call } from "./api.js";
import { h, replace, timeElement } from "./dom.js";

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

function partView(part, encoding) {
  const forced = part.runs.filter((run) => !run.gsm).map((run) => run.text).join("");
  return h(
    "li",
    { class: "segment" },
    h(
      "p",
      { class: "segment-head" },
      h("strong", {}, `Part ${part.number} of ${part.of}`),
      ` · ${part.units} ${encoding === "gsm7" ? "septets" : encoding === "ucs2" ? "UTF-16 units" : "octets"}`,
      forced ? h("span", { class: "muted" }, ` · forced UCS-2: ${[...new Set(forced)].join(" ")}`) : null,
    ),
    h(
      "p",
      { class: "segment-text" },
      part.runs.map((run) =>
        run.gsm ? run.text : h("mark", { class: "forced", title: "not in GSM 03.38" }, run.text),
      ),
    ),
  );
}

// The recipient's consent state and its history, from the consent API.
async function consentView(session, msisdn) {
  const consent = await call(session, "GET", `/v1/consents/${encodeURIComponent(msisdn)}`);
  const purposes = consent.consents.map((event) => event.purpose).join(", ");
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
    h(
      "details",
      {},
      h("summary", {}, `History (${consent.history.length})`),
      h(
        "ol",
        { class: "history" },
        consent.history.map((event) =>
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
      ),
    ),
  );
}

export async function showMessage(session, id, into) {
  const [message, segments] = await Promise.all([
    call(session, "GET", `/v1/messages/${id}`),
    call(session, "GET", `/v1/messages/${id}/segments`),
  ]);
  const encoding = segments.encoding;
  replace(
    into,
    h("h3", {}, "Text"),
    segments.text === null
      ? h("p", { class: "muted" }, "The body is no longer kept (privacy.body_ttl).")
      : h("p", { class: "handset-text" }, segments.text),
    message.pseudonymised
      ? h("p", { class: "note" }, "Pseudonymised: the number is gone; what is shown is a pseudonym.")
      : null,
    facts([
      ["Id", message.id],
      ["Status", message.status],
      ["Error", message.error],
      ["From", message.from],
      ["To", message.to],
      ["Interface", message.interface],
      ["Purpose", message.purpose],
      ["Encoding", encoding === "gsm7" ? "GSM 03.38" : encoding === "ucs2" ? "UCS-2" : "8-bit data"],
      ["data_coding", hex(segments.data_coding)],
      ["Message class", segments.class === null ? "none" : String(segments.class)],
      ["Flash", segments.flash ? "yes" : "no"],
      ["Segments", String(segments.segments)],
      ["UDH/SAR reference", segments.reference === null ? null : String(segments.reference)],
      ["Client ref", message.client_ref],
      ["Submitted", timeElement(message.submitted_at)],
      ["Enroute", message.enroute_at ? timeElement(message.enroute_at) : null],
      ["Final", message.final_at ? timeElement(message.final_at) : null],
    ]),
    h("h3", {}, "Segments"),
    segments.parts.length
      ? h("ol", { class: "segments", "aria-label": "Segments" }, segments.parts.map((p) => partView(p, encoding)))
      : h("p", { class: "muted" }, "No body kept, so no parts to show."),
  );
  if (!message.pseudonymised) into.append(await consentView(session, message.to));
}

export async function showReply(session, item, into) {
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
  );
  into.append(await consentView(session, item.from));
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
