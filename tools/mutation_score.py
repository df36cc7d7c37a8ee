"""Print the mutation score of the last `mutmut run` (used by `make mutation`; not run in CI).

    python tools/mutation_score.py [FILE ...]    only the mutants of these files (MUTATE=...)

Score = killed / (mutants checked, skipped ones left out). A timeout counts as killed, as mutmut
counts it; "no tests" counts as survived: no fast unit test runs that code at all.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check"}
NOT_SCORED = {"not checked", "skipped"}


def module_prefix(file: str) -> str:
    """`lstm_model/scaling.py` -> `lstm_model.scaling.`: how mutmut names that file's mutants."""
    return ".".join(Path(file).with_suffix("").parts) + "."


def mutant_statuses(mutmut: str) -> dict[str, str]:
    done = subprocess.run(
        [mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True
    )
    statuses = {}
    for line in done.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def score_report(statuses: dict[str, str], files: list[str]) -> tuple[list[str], float | None]:
    """The report lines and the score (None when nothing was checked) of these files' mutants."""
    prefixes = tuple(module_prefix(file) for file in files)
    chosen = {n: s for n, s in statuses.items() if not prefixes or n.startswith(prefixes)}
    counts = Counter(chosen.values())
    scored = sum(n for status, n in counts.items() if status not in NOT_SCORED)
    killed = sum(n for status, n in counts.items() if status in KILLED)
    lines = ["mutants: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    if not scored:
        return [*lines, "no mutant checked yet: run `make mutation` first"], None
    survivors = sorted(n for n, status in chosen.items() if status in {"survived", "no tests"})
    lines += [f"  {chosen[name]:<9} {name}" for name in survivors]
    if survivors:
        lines.append("(see one with: mutmut show NAME)")
    lines.append(f"mutation score: {killed}/{scored} = {killed / scored:.1%}")
    return lines, killed / scored


def main(files: list[str]) -> int:
    lines, score = score_report(
        mutant_statuses(str(Path(sys.executable).with_name("mutmut"))), files
    )
    print("\n".join(lines))
    return 1 if score is None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
