"""Where a server's CPU went, from py-spy's collapsed stacks (``bench/run.py --profile
--profile-format raw`` writes them to ``bench/results/profiles/*.txt``).

Prints the share of samples spent in each package (its own code, not what it calls: "self"
time grouped by the file's package) and the functions with the most self time, so that two
servers' profiles can be set side by side as numbers rather than flame graphs::

    .venv/bin/python bench/profile_summary.py bench/results/profiles/ours-relay-20-r1.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def package_of(path: str) -> str:
    """A short name for the code a frame's file belongs to."""
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    if "easyrtc_server/" in path:
        rest = path.split("easyrtc_server/", 1)[1]
        return "easyrtc_server/" + rest.removesuffix(".py")
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib/" + rest.split("/", 1)[0].removesuffix(".py")
    return path or "?"


def summarize(text: str, top: int) -> str:
    packages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaf = stack.split(";")[-1]
        match = _FRAME.match(leaf)
        func, file = (match["func"], match["file"]) if match else (leaf, "")
        packages[package_of(file)] += count
        functions[f"{func} ({package_of(file)})"] += count
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self time by package:"]
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in packages.most_common(top)]
    out += ["", "self time by function:"]
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in functions.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.profiles:
        print(f"== {path}")
        print(summarize(path.read_text(), args.top))
        print()


if __name__ == "__main__":
    main()
