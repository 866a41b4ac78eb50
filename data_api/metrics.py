"""Prometheus metrics and structured access logs for the Data API, in one middleware.

Every request gets a request id (``X-Request-Id``, also in error bodies), is
counted by route template and status, timed, and logged as one ``key=value``
line under the ``data_api.access`` logger. Router errors (404, 405) and
anything a handler lets escape become JSON errors here, so no answer is ever
HTML or a traceback.

    metrics = ApiMetrics()
    app = web.Application(middlewares=[metrics.middleware])
    metrics.render()   # the /metrics body
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from common.signed_http import (
    AUTH_REASON,
    CALLER,
    ERROR_CODE,
    REQUEST_ID,
    error_response,
    new_request_id,
)

logger = logging.getLogger(__name__)
access_log = logging.getLogger("data_api.access")

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED_ROUTE = "unmatched"  # every unknown path shares one label: bounded cardinality


class ApiMetrics:
    """The service's counters, on a registry of its own (several apps can share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "data_api_requests",
            "Requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "data_api_auth_failures",
            "Requests refused by authentication (401) or authorisation (403), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "data_api_request_duration_seconds",
            "Time from the request reaching the handler chain to the answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.blocks_served = Counter(
            "data_api_blocks_served",
            "Zipcode blocks served to validators",
            registry=self.registry,
        )
        self.blocks_issued = Counter(
            "data_api_blocks_issued",
            "Blocks derived and persisted by this process",
            registry=self.registry,
        )

    def render(self) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        request_id = new_request_id()
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the router's 404/405, aiohttp's own 413
            response = error_response(
                exc.status, f"http_{exc.status}", exc.reason or "error", request_id
            )
        except Exception:
            logger.exception("unhandled error (request %s)", request_id)
            response = error_response(500, "internal", "the server failed; see its log", request_id)
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED_ROUTE
        status = response.status
        self.requests.labels(route, request.method, str(status)).inc()
        self.latency.labels(route).observe(elapsed)
        reason = response.get(AUTH_REASON)
        if reason is None and status == 401:
            reason = response.get(ERROR_CODE, "unauthenticated")
        if reason is not None:
            self.auth_failures.labels(reason).inc()
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request=%s method=%s route=%s status=%d ms=%.2f caller=%s code=%s",
                request_id,
                request.method,
                route,
                status,
                elapsed * 1000,
                request.get(CALLER, "-"),
                response.get(ERROR_CODE, "-"),
            )
        return response
