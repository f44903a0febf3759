"""Renders `charwright --help` and every subcommand's help into docs/cli.md.

    python scripts/cli_reference.py          # rewrite the reference in docs/cli.md
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is out of date (the tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def render() -> str:
    from charwright.runtime.cli import COMMANDS, cli

    parts = []
    for args in [[]] + [[name] for name in sorted(COMMANDS)]:
        r = CliRunner().invoke(cli, args + ["--help"], prog_name="charwright",
                               env={"COLUMNS": "100"})
        if r.exit_code != 0:
            raise SystemExit(f"charwright {' '.join(args)} --help failed: {r.output}")
        title = "charwright" + (f" {args[0]}" if args else "")
        parts.append(f"### `{title}`\n\n```text\n{r.stdout.rstrip()}\n```\n")
    return "\n".join(parts)


def splice(text: str, body: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body}{END}{tail}"


def main() -> int:
    text = REFERENCE.read_text(encoding="utf-8")
    new = splice(text, render())
    if "--check" in sys.argv:
        if new != text:
            print("docs/cli.md is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    REFERENCE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
