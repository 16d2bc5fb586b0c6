"""``python -m sparsenet.sweep CONFIG ...``: the same as ``sparsenet sweep CONFIG ...`` (same options,
same exit codes; ``--debug`` anywhere shows tracebacks, as ``sparsenet --debug sweep ...``)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from ..cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = ["--debug"] if "--debug" in argv else []
    return cli_main([*debug, "sweep", *(a for a in argv if a != "--debug")])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
