"""The only place that reads argv and the environment and starts the program."""

from __future__ import annotations

import sys

from bridge.cli import main as cli_main


def main() -> None:
    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
