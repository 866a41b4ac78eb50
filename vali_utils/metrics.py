"""Prometheus metrics of the validator (``--metrics.port``; 0 turns the endpoint off).

Each validator process has its own registry, so tests and several
validators in one interpreter never share counters.

    metrics = ValidatorMetrics()
    metrics.serve(9101, "127.0.0.1")
    metrics.phase("collect")
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

logger = logging.getLogger(__name__)

PHASES = ("idle", "dispatch", "collect", "tiebreaks", "consensus", "weights", "s3_eval")
MODES = ("consensus", "fallback")


class ValidatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycle_phase = Gauge(
            "validator_cycle_phase", "1 for the phase the validator is in", ["phase"], registry=r
        )
        self.mode = Gauge(
            "validator_mode",
            "1 for the running mode: consensus cycles, or S3 evaluation alone (fallback)",
            ["mode"],
            registry=r,
        )
        self.epoch = Gauge("validator_epoch", "epoch of the last cycle started", registry=r)
        self.responders = Gauge(
            "validator_cycle_responders", "miners that answered in the last cycle", registry=r
        )
        self.assignments = Gauge(
            "validator_cycle_assignments", "assignments sent in the last cycle", registry=r
        )
        self.confidence = Gauge(
            "validator_batch_confidence_mean", "mean batch confidence of the last cycle", registry=r
        )
        self.flags = Counter(
            "validator_flags", "miners flagged, by kind of flag", ["kind"], registry=r
        )
        self.disputes = Counter(
            "validator_tiebreak_disputes", "disputed records sent to tie-breakers", registry=r
        )
        self.resolved = Counter(
            "validator_tiebreak_resolved", "disputes the tie-breakers resolved", registry=r
        )
        self.weights_set = Counter(
            "validator_weights_set", "weight-setting attempts by result", ["result"], registry=r
        )
        self.last_weights = Gauge(
            "validator_last_weights_success_timestamp",
            "unix time weights were last set successfully",
            registry=r,
        )
        self.last_cycle = Gauge(
            "validator_last_cycle_success_timestamp",
            "unix time a cycle or an S3 evaluation pass last completed",
            registry=r,
        )
        self.s3_evaluated = Counter(
            "validator_s3_miners_evaluated", "miners evaluated from their S3 data", registry=r
        )
        self.storage_probes = Counter(
            "validator_storage_probes",
            "probes of the Data API and S3 while miners upload, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.spot_check_failures = Counter(
            "validator_spot_check_failures",
            "spot checks without a verdict, by reason (unavailable, timeout, error: a verifier"
            " bug) and phase (cycle, s3_eval)",
            ["reason", "phase"],
            registry=r,
        )
        self.spot_check_verdicts = Counter(
            "validator_spot_check_verdicts",
            "spot checks of a consensus cycle, by verdict",
            ["verdict"],
            registry=r,
        )
        self.cycle_step_seconds = Gauge(
            "validator_cycle_step_seconds",
            "seconds the last cycle spent in each step (dispatch, collect, verify, consensus)",
            ["step"],
            registry=r,
        )
        self.phase("idle")
        self.set_mode("consensus")

    def serve(self, port: int, host: str) -> None:
        if port > 0:
            start_http_server(port, addr=host, registry=self.registry)
            logger.info("metrics on http://%s:%d/metrics", host, port)

    def phase(self, name: str) -> None:
        for phase in PHASES:
            self.cycle_phase.labels(phase).set(1.0 if phase == name else 0.0)

    def set_mode(self, name: str) -> None:
        for mode in MODES:
            self.mode.labels(mode).set(1.0 if mode == name else 0.0)

    def observe_checks(
        self, spot_checks: Iterable[tuple[object, object]], timings: Mapping[str, float]
    ) -> None:
        """A cycle's spot-check verdicts and step durations (``CycleOutcome``'s)."""
        for _, verdict in spot_checks:
            self.spot_check_verdicts.labels(str(verdict)).inc()
        for step, seconds in timings.items():
            self.cycle_step_seconds.labels(step.removesuffix("_s")).set(seconds)
