"""``claimed_sender`` refuses every request ``http_auth.verify`` would refuse without its body.

The server checks these before reading a body (issue 15), so each must be
refused with the same error ``verify`` raises, and a good request must pass.
"""

from __future__ import annotations

import time

import pytest
from bittensor import http_auth
from bittensor.sp_core import Keypair

from common.signed_http import claimed_sender

pytestmark = pytest.mark.unit

SENDER = Keypair.create_from_uri("//claimed-sender")
RECEIVER = Keypair.create_from_uri("//claimed-receiver").ss58_address
OTHER = Keypair.create_from_uri("//claimed-other").ss58_address
BODY = b'{"request_id": "x"}'


def signed(**overrides) -> dict[str, str]:
    nonce = overrides.pop("nonce_ns", None)
    receiver = overrides.pop("receiver", RECEIVER)
    headers = http_auth.sign(
        SENDER, method="POST", path="/r", body=BODY, receiver_ss58=receiver, nonce_ns=nonce
    )
    for name, value in overrides.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


# Built when the test runs, not at collection: a full suite runs this file
# minutes after collecting it, and "future" would have become the present.
CASES = {
    "no_version": lambda: signed(**{http_auth.HEADER_VERSION: None}),
    "bad_version": lambda: signed(**{http_auth.HEADER_VERSION: "2"}),
    "no_hotkey": lambda: signed(**{http_auth.HEADER_HOTKEY: None}),
    "no_nonce": lambda: signed(**{http_auth.HEADER_NONCE: None}),
    "nonce_not_a_number": lambda: signed(**{http_auth.HEADER_NONCE: "12ab"}),
    "no_signature": lambda: signed(**{http_auth.HEADER_SIGNATURE: None}),
    "no_receiver": lambda: signed(receiver=None),
    "wrong_receiver": lambda: signed(receiver=OTHER),
    "stale": lambda: signed(nonce_ns=time.time_ns() - 11_000_000_000),
    "future": lambda: signed(nonce_ns=time.time_ns() + 3_000_000_000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_the_error_verify_raises(case):
    headers = CASES[case]()
    with pytest.raises(http_auth.AuthError) as by_verify:
        http_auth.verify(headers, BODY, method="POST", path="/r", self_hotkey_ss58=RECEIVER)
    with pytest.raises(type(by_verify.value)):
        claimed_sender(headers, RECEIVER)


def test_a_good_request_names_its_sender():
    headers = signed()
    assert claimed_sender(headers, RECEIVER) == SENDER.ss58_address
    # The signature is still checked once the body is read: a tampered body fails there.
    with pytest.raises(http_auth.BadSignature):
        http_auth.verify(headers, BODY + b" ", method="POST", path="/r", self_hotkey_ss58=RECEIVER)
