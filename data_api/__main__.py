"""``python -m data_api`` serves; ``python -m data_api honeypot ...`` manages references."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["honeypot"]:
        from data_api.cli import main as honeypot_main

        return honeypot_main(argv[1:])
    from data_api.server import main as serve_main

    return serve_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
