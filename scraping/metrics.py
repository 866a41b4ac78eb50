"""Prometheus metrics of the miner (``--metrics.port``; 0 turns the endpoint off).

Assignments by mode and status come from the service's own view; source
calls, cost and budget are read from the source's ``stats()`` (when it has
one) at scrape time, so they are never stale and cost nothing in between.

    metrics = MinerMetrics(service, source)
    metrics.serve(9102, "127.0.0.1")
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

logger = logging.getLogger(__name__)

# stats() key -> (metric name, help)
SOURCE_STATS = {
    "calls": ("miner_source_calls", "calls made to the property source (retries included)"),
    "estimated_cost_usd": ("miner_source_cost_usd", "estimated cost of those calls"),
    "budget_remaining": ("miner_source_budget_remaining", "calls left in this month's budget"),
    "rate_limited": ("miner_source_rate_limited", "answers 429 from the source"),
    "timeouts": ("miner_source_timeouts", "source calls that timed out"),
    "server_errors": ("miner_source_server_errors", "source answers 5xx"),
    "records": ("miner_source_records", "listings the source returned"),
    "failed_zipcodes": ("miner_source_failed_zipcodes", "zipcodes the source could not scrape"),
}


class MinerMetrics:
    def __init__(self, service: Any, source: Any) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.source = source
        self.assignments = Gauge(
            "miner_assignments",
            "assignments this process knows, by status",
            ["status"],
            registry=self.registry,
        )
        self.assignments.labels("total").set_function(lambda: len(self.service._status))
        for status in ("accepted", "in_progress", "completed", "failed"):
            self.assignments.labels(status).set_function(
                lambda status=status: self._tally()[status]
            )
        self.running = Gauge(
            "miner_assignments_running", "assignments being worked on now", registry=self.registry
        )
        self.running.set_function(lambda: len(self.service._tasks))
        stats = getattr(source, "stats", None)
        if callable(stats):
            for key, (name, text) in SOURCE_STATS.items():
                gauge = Gauge(name, text, registry=self.registry)
                gauge.set_function(lambda key=key: float(self._stat(key)))

    def _tally(self) -> Tally:
        return Tally(self.service._status.values())

    def _stat(self, key: str) -> float:
        try:
            value = self.source.stats().get(key)
        except (AttributeError, TypeError, ValueError):
            return 0.0
        return float(value) if isinstance(value, int | float) else 0.0

    def serve(self, port: int, host: str) -> None:
        if port > 0:
            start_http_server(port, addr=host, registry=self.registry)
            logger.info("metrics on http://%s:%d/metrics", host, port)
