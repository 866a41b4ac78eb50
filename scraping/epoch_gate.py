"""Which assignments belong to the current epoch: the miner's own wall clock, and the nonce.

Validators align epochs on the wall clock (epoch ``e`` covers
``[e * T, (e + 1) * T)``, ``common/epochs.py``), so the miner knows the
current epoch from its own clock and the epoch length ``T`` (``CYCLE_SECONDS``)
without asking anyone. An assignment of another epoch, or whose deadline lies
past its epoch's end, is refused: its work would never be scored. The epoch
nonce is the Data API's; the miner learns it from its upload grants
(``NonceBook.learn``). A nonce other than the one learned is refused; an
unknown one is accepted while the epoch is current, so a Data API outage
never stops the miner taking work.

    gate = EpochGate(EpochClock(14400, 0.75), slack_s=30.0, nonces=NonceBook())
    why = gate.refusal("epoch-123", "ab12...", deadline_at, time.time())   # None: current
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.epochs import EpochClock
from common.s3_layout import parse_epoch_id

NONCE_EPOCHS_KEPT = 8  # the current epoch's nonce and a few before it; older ones are useless


class NonceBook:
    """The Data API's nonce of each recent epoch, as learned from upload grants."""

    def __init__(self, keep: int = NONCE_EPOCHS_KEPT) -> None:
        self.keep = keep
        self._nonces: dict[int, str] = {}

    def learn(self, epoch: int, nonce: str) -> None:
        self._nonces[epoch] = nonce
        for old in sorted(self._nonces)[: -self.keep]:
            del self._nonces[old]

    def get(self, epoch: int) -> str | None:
        return self._nonces.get(epoch)


@dataclass
class EpochGate:
    """Refuses assignments that are not of the current epoch (see the module docstring).

    ``clock`` None: the epoch length is not known (the local subnet picks its
    own), so only the nonce is checked.
    """

    clock: EpochClock | None
    slack_s: float
    nonces: NonceBook = field(default_factory=NonceBook)

    def refusal(
        self, epoch_id: str | None, nonce: str | None, deadline_at: float | None, now: float
    ) -> str | None:
        """Why an assignment is not current (one line for the validator), or None."""
        epoch = _epoch_number(epoch_id)
        if self.clock is not None:
            if epoch is None:
                return f"epoch {str(epoch_id)[:64]!r} is not an epoch id (epoch-<number>)"
            current = self.clock.epoch_at(now)
            start, end = self.clock.start(epoch), self.clock.end(epoch)
            if not start - self.slack_s <= now < end + self.slack_s:
                return f"epoch {epoch} is not current: this miner's clock says epoch {current}"
            if deadline_at is not None and deadline_at > end + self.slack_s:
                return f"deadline is after the end of epoch {epoch}"
        known = self.nonces.get(epoch) if epoch is not None else None
        if known is not None and nonce is not None and nonce != known:
            return f"epoch nonce {nonce[:16]} is not the Data API's nonce of epoch {epoch}"
        return None


def _epoch_number(epoch_id: str | None) -> int | None:
    if epoch_id is None:
        return None
    try:
        return parse_epoch_id(epoch_id)
    except ValueError:
        return None
