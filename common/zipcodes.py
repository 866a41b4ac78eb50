"""What a US zipcode looks like, defined once: five ASCII digits (ZIP+4 where a source sends it).

Every check of a zipcode (assignments, keys, manifests, wire models, the
command line) uses ``ZIPCODE`` or the pydantic type ``Zipcode``; ``ZIP_PLUS_4``
is only for reading what a source sends ("77494-1234"), which is then cut to
its five digits. ``[0-9]``, not ``\\d``: ``\\d`` takes digits of any script.

    ZIPCODE.fullmatch("77494")                      # fullmatch: no trailing newline
    class Entry(BaseModel): zipcode: Zipcode
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

ZIPCODE_REGEX = r"[0-9]{5}"
ZIP_PLUS_4_REGEX = rf"{ZIPCODE_REGEX}(?:-[0-9]{{4}})?"  # "77494" or "77494-1234"

ZIPCODE = re.compile(ZIPCODE_REGEX)
ZIP_PLUS_4 = re.compile(ZIP_PLUS_4_REGEX)

# A pydantic field holding a five-digit zipcode.
Zipcode = Annotated[str, StringConstraints(pattern=rf"^{ZIPCODE_REGEX}$")]
