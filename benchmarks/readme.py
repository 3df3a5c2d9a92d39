"""``python -m benchmarks.readme [--json FILE] [--readme FILE]``: rewrite the benchmark table
of a markdown page (the docs' ``docs/guide/benchmarks.md``) from ``benchmarks.json``.

The table lives between two markers on lines of their own::

    <!-- benchmarks:start -->
    ... generated: do not edit by hand ...
    <!-- benchmarks:end -->

Everything between them is replaced by the command that reproduces the figures (recorded
in the JSON by ``python -m benchmarks``) and the tables of ``benchmarks.md``. ``python -m
benchmarks --readme docs/guide/benchmarks.md`` runs the benchmarks and then this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import markdown_table

START = "<!-- benchmarks:start -->"
END = "<!-- benchmarks:end -->"


def render(payload: dict, target: str = "README.md") -> str:
    """The block between the markers: how to reproduce (rewriting ``target``), then the
    tables."""
    command = payload.get("command") or "python -m benchmarks"
    return (
        f"Generated from `benchmarks.json` by `python -m benchmarks.readme`; to reproduce, "
        f"run `{command} --readme {target}` (ratio = ebmflow time / hand-written time for "
        f"the same work).\n\n{markdown_table(payload)}"
    )


def _shown_path(page: Path) -> str:
    """``page`` as the reproduce command should name it: relative to the working folder
    (the project root, where the command runs) when inside it, else its file name."""
    relative = os.path.relpath(page)
    return Path(page).name if relative.startswith("..") else Path(relative).as_posix()


def replace_block(text: str, block: str, source: str = "README") -> str:
    """``text`` with the lines between the markers replaced by ``block``."""
    starts, ends = text.count(START), text.count(END)
    if starts != 1 or ends != 1:
        raise ValueError(
            f"{source}: expected the markers {START} and {END} exactly once each, on lines of "
            f"their own; found {starts} and {ends}"
        )
    i, j = text.index(START) + len(START), text.index(END)
    if j < i:
        raise ValueError(f"{source}: {END} comes before {START}")
    return f"{text[:i]}\n{block.rstrip()}\n{text[j:]}"


def update_readme(readme: Path, json_path: Path) -> None:
    """Rewrite ``readme``'s benchmark block from ``json_path`` (atomically)."""
    payload = json.loads(Path(json_path).read_text(encoding="utf-8"))
    readme = Path(readme)
    block = render(payload, _shown_path(readme))
    text = replace_block(readme.read_text(encoding="utf-8"), block, str(readme))
    fd, tmp = tempfile.mkstemp(dir=readme.parent, prefix=f".{readme.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, readme.stat().st_mode & 0o7777)  # mkstemp makes it private
        os.replace(tmp, readme)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.readme",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-results/benchmarks.json"),
        help="the results (default: %(default)s)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=Path("docs/guide/benchmarks.md"),
        help="the page to update (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        update_readme(args.readme, args.json)
    except (OSError, ValueError) as exc:
        print(f"python -m benchmarks.readme: error: {exc}", file=sys.stderr)
        return 1
    print(f"updated the benchmark table in {args.readme} from {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
