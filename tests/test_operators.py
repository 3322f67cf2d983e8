"""The operators' view, checked against a real Prometheus and promtool.

The gateway runs in-process on loopback; Prometheus scrapes it twice a second and
loads prometheus/alerts.yml. Traffic goes in over HTTP and SMPP (smpplib),
blocked recipients included, and Prometheus must then hold exactly those counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from gateway.config import config_from_dict
from gateway.domain import Status
from gateway.metrics import EventCounter, Metrics
from tests.conftest import EVENT_TIMEOUT, RunningGateway, running_gateway
from tests.prometheus_server import ALERT_RULES, ROOT, binary, prometheus_server
from tests.smpp_clients import smpplib_esme
from tests.test_consent import call
from tests.test_smpp_server import submit_fields

DASHBOARD = ROOT / "dashboards" / "smsgw.json"
CATALOGUE = ROOT / "docs" / "metrics.md"
# The template variables the dashboard may use, and what stands in for them here.
DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$tenant": ".*"}

OPTED_OUT = "+46701110001"
DELIVERABLE = [f"+4670222{i:04d}" for i in range(6)]
UNDELIVERABLE = "+46709990001"  # the base config's undeliverable prefix

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
    "topk", "bottomk", "quantile", "count_values", "group",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        word = match.group(0)
        is_function = expr[match.end() :].lstrip().startswith("(")
        if word.lower() not in PROMQL_KEYWORDS and not is_function:
            names.add(word)
    return names


def test_metric_names_finds_selectors_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(smsgw_x_bucket{a="b c"}[5m])))'
        " / on (tenant) group_left max(smsgw_y) > 2 * scalar(smsgw_z offset 5m)"
    )
    assert metric_names(expr) == {"smsgw_x_bucket", "smsgw_y", "smsgw_z"}


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page can carry, from its TYPE lines."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names.add(name)
        names.update(name.removesuffix("_total") + s for s in suffixes.get(kind, ()))
    return names


def dashboard_exprs() -> list[str]:
    """Every panel query of the dashboard, with its template variables filled in."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for key, value in node.items():
                if key != "templating":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    filled = []
    for expr in found:
        for variable, value in DASHBOARD_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown template variable in {expr!r}"
        filled.append(expr)
    return filled


async def drive_traffic(gateway: RunningGateway) -> dict[str, int]:
    """HTTP and SMPP submits, some to an opted-out number; returns what was expected."""
    finals = gateway.finals()
    status, document = await call(gateway, "POST", "/v1/opt-outs", json={"msisdns": [OPTED_OUT]})
    assert status == 200, document
    http_ok = [*DELIVERABLE[:3], UNDELIVERABLE]
    for to in http_ok:
        assert (await gateway.send(to=to)).status == 202
    for _ in range(2):
        response = await gateway.send(to=OPTED_OUT)
        assert (response.status, (await response.json())["code"]) == (403, "recipient_opted_out")
    async with smpplib_esme(gateway.smpp_port) as esme:
        for to in DELIVERABLE[3:]:
            await esme.send(**submit_fields(to=to[1:]))
            assert (await esme.next("submit_sm_resp")).status == 0
        await esme.send(**submit_fields(to=OPTED_OUT[1:]))
        assert (await esme.next("submit_sm_resp")).status == 0x401
        await esme.unbind()
    statuses = [(await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)).status for _ in range(6 + 1)]
    assert statuses.count(Status.DELIVERED) == 6
    return {"http": len(http_ok), "smpp": 3, "blocked": 3, "delivered": 6, "undeliverable": 1}


async def test_prometheus_sees_what_was_sent_and_every_query_evaluates(
    config_dict: dict[str, Any], tmp_path: Path
) -> None:
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        target = gateway.url.removeprefix("http://")
        async with prometheus_server(tmp_path, target) as prometheus:
            expected = await drive_traffic(gateway)
            settled = time.time()
            await prometheus.wait_for_scrape_after(settled)

            accepted = 'sum by (interface) (smsgw_messages_total{outcome="accepted"})'
            by_interface = {
                series["metric"]["interface"]: float(series["value"][1])
                for series in await prometheus.query(accepted)
            }
            assert by_interface == {"http": expected["http"], "smpp": expected["smpp"]}
            blocked = await prometheus.scalar("sum(smsgw_privacy_blocks_total)")
            assert blocked == expected["blocked"]
            rejected = 'sum(smsgw_rejections_total{code="recipient_opted_out"})'
            assert await prometheus.scalar(rejected) == expected["blocked"]
            for status in ("delivered", "undeliverable"):
                outcome = f'sum(smsgw_delivery_outcomes_total{{status="{status}"}})'
                assert await prometheus.scalar(outcome) == expected[status]
            # The session unbound cleanly: no bound session and no negative series left.
            assert await prometheus.scalar("sum(smsgw_smpp_sessions)") == 0
            assert await prometheus.scalar("min(smsgw_smpp_sessions)") == 0

            async with gateway.http.get(f"{gateway.url}/metrics") as response:
                exported = exported_names(await response.text())
            exprs = dashboard_exprs()
            assert len(exprs) >= 15
            rules = await prometheus.wait_for_rules_evaluated()
            assert {rule["type"] for rule in rules} == {"alerting"}
            assert {rule["health"] for rule in rules} == {"ok"}, rules
            for expr in exprs + [rule["query"] for rule in rules]:
                await prometheus.query(expr)  # raises on an evaluation error
                unknown = metric_names(expr) - exported
                assert not unknown, f"{expr!r} uses metrics the gateway does not export"


def test_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", str(ALERT_RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [binary("promtool"), "test", "rules", str(ALERT_RULES.with_name("alerts_test.yml"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_is_in_the_catalogue_with_its_type_and_labels() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]*) \|", CATALOGUE.read_text(), re.M)
    documented = {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    metrics = Metrics()
    actual: dict[str, tuple[str | None, set[str]]] = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for sample in family.samples for k in sample.labels} - {"le"}
        actual[name] = (family.type, labels)
    # A labelled metric has no samples until first used: take its label names instead.
    for metric in vars(metrics).values():
        if isinstance(metric, EventCounter):
            actual[metric.name] = ("counter", set(metric.labelnames))
        elif isinstance(metric, MetricWrapperBase) and metric._labelnames:
            name = metric._name + ("_total" if metric._type == "counter" else "")
            actual[name] = (metric._type, set(metric._labelnames))
    assert documented == actual
