"""Epoch blocks and honeypots from the Data API, in the shapes the validator's loop takes.

blocks = ApiBlocks(ValidatorDataAPI(url, api_hotkey, keypair, session, cache_path=...))
block = await blocks.block(epoch)          # BlocksUnavailable: the evaluator falls back
honeypots = await blocks.honeypots(epoch)  # HoneypotsUnavailable: scored without them
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from common.data_api_models import MAX_STATUS_MINERS, HoneypotReveal, MinerStatus, StatusReport
from common.protocol import Source
from consensus.types import Honeypot, HoneypotKind
from vali_utils.assignments import SOURCE, HoneypotsUnavailable
from vali_utils.blocks import EpochBlock
from vali_utils.data_api_client import (
    DataAPIRefused,
    DataAPIUnavailable,
    ValidatorDataAPI,
    epoch_block,
)
from vali_utils.evaluator import BlocksUnavailable

logger = logging.getLogger(__name__)


class ApiBlocks:
    def __init__(self, api: ValidatorDataAPI) -> None:
        self.api = api

    async def block(self, epoch: int) -> EpochBlock:
        try:
            return epoch_block(await self.api.block(epoch))
        except (DataAPIUnavailable, DataAPIRefused) as exc:
            raise BlocksUnavailable(str(exc)) from exc
        except ValueError as exc:  # a block no plan can be built from: not followed
            logger.error("epoch %d: unusable block from the Data API: %s", epoch, exc)
            raise BlocksUnavailable(str(exc)) from exc

    async def honeypots(self, epoch: int) -> dict[str, Honeypot]:
        try:
            reveal = await self.api.honeypots(epoch)
        except (DataAPIUnavailable, DataAPIRefused) as exc:
            raise HoneypotsUnavailable(str(exc)) from exc
        return honeypots_from_reveal(reveal, SOURCE)

    async def report_status(self, epoch: int, report: dict) -> None:
        """Send the cycle's summary to the Data API; a failure is logged, never raised."""
        try:
            await self.api.report_status(epoch, status_report(report))
        except (DataAPIUnavailable, DataAPIRefused, ValidationError) as exc:
            logger.warning("epoch %d: status report not sent: %s", epoch, exc)


def status_report(report: dict) -> StatusReport:
    """The Data API's summary of a cycle from the validator's epoch report."""
    confidences = list(report["batch_confidence"].values())
    miners = sorted(report["miners"], key=lambda m: -m["weight"])[:MAX_STATUS_MINERS]
    return StatusReport(
        plan_hash=report["plan_hash"],
        groups=report["groups"],
        assignments=report["assignments"],
        acknowledged=report["acknowledged"],
        completed=report["completed"],
        batches=len(confidences),
        confident_batches=sum(c >= 0.7 for c in confidences),
        mean_batch_confidence=sum(confidences) / len(confidences) if confidences else None,
        flagged_miners=len({f["hotkey"] for f in report["flags"]}),
        honeypot_flags=sum(f["kind"] == "honeypot" for f in report["flags"]),
        spot_checks=report["spot_checks"],
        spot_checks_failed=sum(report["spot_check_failures"].values()),
        spot_checks_mostly_failed=report["spot_checks_mostly_failed"],
        weights_set=bool(report["weights_set"]),
        miners=[
            MinerStatus(
                uid=m["uid"],
                hotkey=m["hotkey"],
                weight=m["weight"],
                score=max(0.0, m["score"]),
                flags=m["flags"],
            )
            for m in miners
        ],
    )


def honeypots_from_reveal(reveal: HoneypotReveal, source: Source) -> dict[str, Honeypot]:
    """The consensus core's honeypots: kind, and the reference answer for ``source``.

    A reference honeypot without a reference for the source the miners were
    asked about cannot judge anyone and is left out.
    """
    out: dict[str, Honeypot] = {}
    for pot in reveal.honeypots:
        if pot.kind == "no_residential":
            out[pot.zipcode] = Honeypot(pot.zipcode, HoneypotKind.NO_RESIDENTIAL)
        elif source in pot.references:
            reference = {int(zpid): record_hash for zpid, record_hash in pot.references[source]}
            out[pot.zipcode] = Honeypot(pot.zipcode, HoneypotKind.REFERENCE, reference)
    return out
