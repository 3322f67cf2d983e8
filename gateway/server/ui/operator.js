// The operator's views (admin API): the instances sharing the store, SMPP sessions, chaos
// (editable), retention against its window, the consent registry's counts, and where the
// metrics and dashboard are.

import { call } from "./api.js";
import { h, replace, timeElement } from "./dom.js";

function table(caption, headings, rows) {
  return h(
    "table",
    { class: "results" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headings.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows.length ? rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))) : h("tr", {}, h("td", { colspan: String(headings.length), class: "muted" }, "none"))),
  );
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 86400) return `${(value / 86400).toFixed(1)} d`;
  if (value >= 3600) return `${(value / 3600).toFixed(1)} h`;
  return `${Math.round(value)} s`;
}

function chaosEditor(session, tenant, settings, refresh) {
  const area = h("textarea", { id: "chaos-settings", rows: "8", spellcheck: "false" }, JSON.stringify(settings, null, 2));
  const status = h("p", { class: "error", role: "alert" });
  async function send(method, body) {
    status.textContent = "";
    try {
      await call(session, method, `/admin/v1/tenants/${encodeURIComponent(tenant)}/chaos`, body);
      await refresh();
    } catch (error) {
      status.textContent = error.message;
    }
  }
  return h(
    "div",
    { class: "chaos" },
    h("label", { for: "chaos-settings" }, `Chaos settings for ${tenant}`),
    area,
    h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", onclick: () => {
        let body;
        try {
          body = JSON.parse(area.value);
        } catch {
          status.textContent = "That is not JSON.";
          return;
        }
        send("PUT", body);
      } }, "Save chaos"),
      h("button", { type: "button", onclick: () => send("DELETE") }, "Turn chaos off"),
    ),
    status,
  );
}

export async function showOperator(session, into, tenant) {
  const [instances, sessions, chaos, retention, consents, links] = await Promise.all(
    ["/instances", "/smpp/sessions", "/chaos", "/retention", "/consents", "/links"].map((path) => call(session, "GET", `/admin/v1${path}`)),
  );
  const refresh = () => showOperator(session, into, tenant);
  const counts = Object.entries(consents.tenants);
  const countNames = counts.length ? Object.keys(counts[0][1]) : [];
  const last = retention.last_run;
  replace(
    into,
    h("h3", {}, "Instances"),
    table(
      `${instances.instances.filter((i) => i.alive).length} live, this one ${instances.this}`,
      ["instance", "state", "started", "last heartbeat", "HTTP", "SMPP port", "sessions", "version"],
      instances.instances.map((i) => [
        i.id === instances.this ? h("strong", {}, i.id) : i.id,
        i.alive ? "live" : h("span", { class: "error" }, "dead"),
        timeElement(i.started_at),
        timeElement(i.heartbeat_at),
        i.http_url || "—",
        i.smpp_port ? String(i.smpp_port) : "—",
        String(i.sessions),
        i.version,
      ]),
    ),
    h("h3", {}, "SMPP sessions"),
    table(
      `${sessions.sessions.length} bound`,
      ["system_id", "tenant", "bind", "since", "TLS", "deliver window", "submits pending"],
      sessions.sessions.map((s) => [
        s.system_id,
        s.tenant,
        s.bind_type,
        timeElement(s.since),
        s.tls ? "yes" : "no",
        s.deliver_window.outstanding === null ? "—" : `${s.deliver_window.outstanding} / ${s.deliver_window.size}`,
        `${s.submits.pending} / ${s.submits.max}`,
      ]),
    ),
    h("h3", {}, "Chaos"),
    table(
      "per tenant",
      ["tenant", "settings"],
      Object.entries(chaos.tenants).map(([id, settings]) => [id, h("code", {}, JSON.stringify(settings))]),
    ),
    chaosEditor(session, tenant, chaos.tenants[tenant], refresh),
    h("h3", {}, "Retention"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Oldest identifiable record"),
      h("dd", {}, retention.oldest_identifiable_at ? [timeElement(retention.oldest_identifiable_at), ` (${seconds(retention.oldest_identifiable_age_seconds)} old)`] : "none"),
      h("dt", {}, "Pseudonymised after"),
      h("dd", {}, seconds(retention.pseudonymise_after_seconds)),
      h("dt", {}, "Within the window"),
      h("dd", { class: retention.within_window ? "" : "error" }, retention.within_window ? "yes" : "no"),
      h("dt", {}, "Deleted after"),
      h("dd", {}, seconds(retention.delete_after_seconds)),
      h("dt", {}, "Bodies kept"),
      h("dd", {}, seconds(retention.body_ttl_seconds)),
      h("dt", {}, "Last run"),
      h("dd", {}, last ? [timeElement(last.at), ` · ${last.pseudonymised} pseudonymised, ${last.deleted} deleted, ${last.bodies_erased} bodies erased`] : "not yet"),
    ),
    h("h3", {}, "Consent registry"),
    table("per tenant", ["tenant", ...countNames], counts.map(([id, row]) => [id, ...countNames.map((name) => String(row[name]))])),
    h("h3", {}, "Links"),
    h(
      "ul",
      {},
      h("li", {}, h("a", { href: links.metrics }, "Prometheus metrics"), ` (${links.metrics})`),
      h("li", {}, h("a", { href: links.openapi }, "OpenAPI document"), ` (${links.openapi})`),
      h("li", {}, "Grafana dashboard: ", h("code", {}, links.grafana_dashboard), " in the source tree (import it into Grafana)"),
    ),
  );
}
