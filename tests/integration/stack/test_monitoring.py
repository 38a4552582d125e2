"""Prometheus scrapes, evaluates rules and sends alerts to Alertmanager, which delivers them."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.conftest import TestStack, wait_for


class Receiver:
    """A local Alertmanager webhook receiver that queues every notification it gets."""

    def __init__(self) -> None:
        self.notifications: queue.Queue[dict[str, Any]] = queue.Queue()
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_scraped_metric_fires_rule_and_alertmanager_delivers_to_webhook(
    stack: TestStack, prometheus_url: str, alertmanager_url: str
) -> None:
    run = uuid.uuid4().hex[:8]
    registry = CollectorRegistry()
    gauge = Gauge("stack_test_value", "a value the test controls", ["run"], registry=registry)
    gauge.labels(run=run).set(1)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_address[1]
    receiver = Receiver()
    stack.stack.set_alert_webhook(receiver.url)
    try:
        stack.stack.add_scrape_target(f"stack-test-{run}", f"127.0.0.1:{port}", {"test": "stack"})

        def scraped() -> bool:
            r = requests.get(
                f"{prometheus_url}/api/v1/query",
                params={"query": f'stack_test_value{{run="{run}"}}'},
                timeout=5,
            ).json()
            return bool(r["data"]["result"]) and r["data"]["result"][0]["value"][1] == "1"

        wait_for(scraped, 30, "Prometheus scraped the local endpoint")

        stack.stack.write_rules(
            f"stack-test-{run}",
            [
                {
                    "name": "stack-test",
                    "rules": [
                        {
                            "alert": "StackTestHigh",
                            "expr": f'stack_test_value{{run="{run}"}} > 5',
                            "labels": {"severity": "test", "run": run},
                            "annotations": {"summary": "value above 5"},
                        }
                    ],
                }
            ],
        )
        gauge.labels(run=run).set(10)

        def delivered() -> dict[str, Any] | None:
            try:
                note = receiver.notifications.get(timeout=1)
            except queue.Empty:
                return None
            alerts = [a for a in note["alerts"] if a["labels"].get("run") == run]
            return note if alerts else None

        note = wait_for(delivered, 60, "Alertmanager delivered the alert to the webhook")
        alert = next(a for a in note["alerts"] if a["labels"].get("run") == run)
        assert alert["labels"]["alertname"] == "StackTestHigh"
        assert alert["status"] == "firing"
        am_alerts = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5).json()
        assert any(a["labels"].get("run") == run for a in am_alerts)
    finally:
        stack.stack.remove_rules(f"stack-test-{run}")
        stack.stack.remove_scrape_target(f"stack-test-{run}")
        receiver.close()
        server.shutdown()
