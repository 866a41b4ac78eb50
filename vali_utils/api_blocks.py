"""Epoch blocks and honeypots from the Data API, in the shapes the validator's loop takes.

    blocks = ApiBlocks(ValidatorDataAPI(url, api_hotkey, keypair, session, cache_path=...))
    block = await blocks.block(epoch)          # BlocksUnavailable: the evaluator falls back
    honeypots = await blocks.honeypots(epoch)  # HoneypotsUnavailable: scored without them
"""

from __future__ import annotations

from common.data_api_models import HoneypotReveal
from common.protocol import Source
from consensus.types import Honeypot, HoneypotKind
from vali_utils.blocks import EpochBlock
from vali_utils.cycle import SOURCE, HoneypotsUnavailable
from vali_utils.data_api_client import (
    DataAPIRefused,
    DataAPIUnavailable,
    ValidatorDataAPI,
    epoch_block,
)
from vali_utils.evaluator import BlocksUnavailable


class ApiBlocks:
    def __init__(self, api: ValidatorDataAPI) -> None:
        self.api = api

    async def block(self, epoch: int) -> EpochBlock:
        try:
            return epoch_block(await self.api.block(epoch))
        except (DataAPIUnavailable, DataAPIRefused) as exc:
            raise BlocksUnavailable(str(exc)) from exc

    async def honeypots(self, epoch: int) -> dict[str, Honeypot]:
        try:
            reveal = await self.api.honeypots(epoch)
        except (DataAPIUnavailable, DataAPIRefused) as exc:
            raise HoneypotsUnavailable(str(exc)) from exc
        return honeypots_from_reveal(reveal, SOURCE)


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
