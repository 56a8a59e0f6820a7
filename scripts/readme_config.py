"""Regenerate the configuration reference in README.md from the schema in
bridge/config.py (`make readme-config`); tests/test_config.py checks it."""

from __future__ import annotations

from pathlib import Path

from bridge.config import reference

START, END = "<!-- CONFIG-REFERENCE -->", "<!-- /CONFIG-REFERENCE -->"


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else rest
    path.write_text(f"{head}{START}\n{reference()}\n{END}{tail}")


if __name__ == "__main__":
    main()
