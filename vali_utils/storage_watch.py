"""Whether miners could upload: the Data API and S3 probed all through each upload window.

An outage while miners upload (between the assignments and the collect
deadline) loses honest files, and nothing read after the window can tell a
lost upload from work not done: by then the cycle's manifest checks and the
S3 evaluation find S3 healthy again. So the validator watches while it
happens. Every ``interval_s`` it asks the Data API's ``/v1/health`` (which
answers for the Data API, where miners get their upload grants, and for its
S3) and, when it reads the bucket itself, lists one key. In an epoch whose
upload window saw ``in_a_row`` failed probes in a row, a missing file is no
evidence: the S3 rounds do not judge coverage (``consensus.s3_evaluation``
``outage_in_window`` and ``coverage_excused``; ``S3EvaluationPass`` asks).

    watch = StorageWatch([api_probe, bucket_probe], interval_s=30, in_a_row=2)
    task = asyncio.create_task(watch.run(stop))
    why = watch.outage(window_start, collect_deadline)   # None: the window was clean

A window the validator was not running for is not judged: a restart is no
outage (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aiohttp

from common.waits import wait_event
from config.storage import S3EvalConfig
from consensus.s3_evaluation import outage_in_window
from vali_utils.assignments import S3Access
from vali_utils.data_api_client import ValidatorDataAPI
from vali_utils.metrics import ValidatorMetrics
from vali_utils.s3_reader import DirectS3Reader, StorageUnavailable

logger = logging.getLogger(__name__)

# One probe: None when what it asks answers, else why not.
Probe = Callable[[], Awaitable[str | None]]
KEEP_EPOCHS = 3  # the S3 passes of an epoch run during the next one


class StorageWatch:
    def __init__(
        self,
        probes: Sequence[Probe],
        *,
        interval_s: float,
        in_a_row: int,
        keep_s: float,
        metrics: ValidatorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.probes = tuple(probes)
        self.interval_s = interval_s
        self.in_a_row = in_a_row
        self.keep_s = keep_s
        self.metrics = metrics
        self.clock = clock
        self.timeout_s = probe_timeout(interval_s)
        self.observations: deque[tuple[float, bool]] = deque()
        self._last_ok: bool | None = None

    async def probe_once(self) -> bool:
        """Run every probe once and record the result; True when all of them answered."""
        at = self.clock()
        answers = await asyncio.gather(*(self._ask(probe) for probe in self.probes))
        failures = [why for why in answers if why]
        ok = not failures
        self.observations.append((at, ok))
        while self.observations and self.observations[0][0] < at - self.keep_s:
            self.observations.popleft()
        if self.metrics is not None:
            self.metrics.storage_probes.labels("ok" if ok else "failed").inc()
        if not ok and self._last_ok is not False:
            logger.warning("storage watch: miners may not upload now: %s", "; ".join(failures))
        elif ok and self._last_ok is False:
            logger.info("storage watch: the Data API and S3 answer again")
        self._last_ok = ok
        return ok

    async def _ask(self, probe: Probe) -> str | None:
        try:
            async with asyncio.timeout(self.timeout_s):  # not wait_for: see common/waits.py
                return await probe()
        except TimeoutError:
            return f"no answer in {self.timeout_s:.1f}s"
        except (StorageUnavailable, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.probe_once()
            except Exception:  # a bug in a probe: said loudly, and the watch goes on
                logger.exception("storage watch: a probe failed unexpectedly (not an outage)")
            pause = max(0.0, self.interval_s - (time.monotonic() - started))
            await wait_event(stop, pause)

    def outage(self, start: float, end: float) -> str | None:
        """Why files missing from the upload window ``[start, end]`` are no evidence, or None.

        None when the window was clean; else the outage, for ``coverage_excused``.

        Probes up to ``in_a_row`` intervals past ``end`` count: an outage at
        the deadline is seen in full only after it.
        """
        span = outage_in_window(
            list(self.observations), start, end + self.in_a_row * self.interval_s, self.in_a_row
        )
        if span is None:
            return None
        return (
            f"upload_window_outage: the Data API or S3 did not answer from {_utc(span[0])}"
            f" to {_utc(span[1])}"
        )


def probe_timeout(interval_s: float) -> float:
    """A probe gives up before the next is due, so probes never pile up."""
    return max(0.5, min(10.0, 0.8 * interval_s))


def build_watch(
    cycle_seconds: float,
    api: ValidatorDataAPI | None,
    s3: S3Access | None,
    metrics: ValidatorMetrics | None = None,
    config: S3EvalConfig | None = None,
) -> StorageWatch | None:
    """The validator's watch: the Data API's health, and the bucket when it reads it itself.

    None when the validator runs no S3 checks. Probes every
    ``watch_interval_s``, or a twenty-fifth of a shorter epoch.
    """
    if s3 is None:
        return None
    cfg = config or S3EvalConfig()
    interval = min(cfg.watch_interval_s, cycle_seconds / 25)
    probes: list[Probe] = []
    if api is not None:
        timeout = probe_timeout(interval)
        probes.append(lambda: api.storage_health(timeout))
    reader = s3.reader
    if isinstance(reader, DirectS3Reader):

        async def bucket() -> None:
            await reader.probe()

        probes.append(bucket)
    return StorageWatch(
        probes,
        interval_s=interval,
        in_a_row=cfg.watch_failures_in_a_row,
        keep_s=KEEP_EPOCHS * cycle_seconds,
        metrics=metrics,
    )


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")
