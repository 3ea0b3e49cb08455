"""The tables ``python -m bench`` prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

WORKLOADS = (("insert", "W1 insert"), ("update", "W2 update"), ("delete", "W3 delete"))


def _ms(value: float) -> str:
    return f"{value:.3f}"


def print_results(results: dict[str, Any], labels: dict[str, str]) -> None:
    """Print the write and the read table of one run."""
    sizes = results["sizes"]
    # Wide enough for both tables also when the output goes to a file or a CI log.
    console = Console(width=max(Console().width, 120))
    writes = Table(
        title=f"Writes: {sizes['objects']:,} objects in commits of {sizes['batch']}, "
        f"{sizes['updates']} updates of each; medians of {results['repetitions']} "
        "repetitions, ratios to plain taken per repetition",
    )
    for column in ("system", "workload", "seconds", "ratio to plain"):
        writes.add_column(column, justify="left" if column in ("system", "workload") else "right")
    writes.add_column(f"statements per commit of {sizes['batch']}", justify="right")
    writes.add_column("statements per commit of 10", justify="right")
    for name, summary in results["systems"].items():
        for workload, title in WORKLOADS:
            measured = summary[workload]
            writes.add_row(
                labels[name] if workload == "insert" else "",
                title,
                f"{measured['seconds']:.3f}",
                f"{measured['ratio']:.2f}x",
                f"{measured['statements_per_commit']:g}",
                f"{measured['statements_per_commit_of_10']:g}",
                end_section=workload == "delete",
            )
    console.print(writes)

    reads = Table(
        title="History reads, median milliseconds per call: W4/W5 after the writes above, "
        f"W6 at {sizes['history_rows']:,} history rows; raw driver: the same SQL run "
        "directly on the DBAPI connection",
    )
    for column in ("system", "W4 versions()", "W5 version_at", "W6 versions()", "W6 version_at"):
        reads.add_column(column, justify="left" if column == "system" else "right")
    reads.add_column(f"W6 version_at, {sizes['deep_versions']:,} versions", justify="right")
    reads.add_column("W6 raw driver: versions() / version_at / deep", justify="right")
    for name, summary in results["systems"].items():
        if "grown_reads" not in summary:
            continue
        fresh, grown = summary["fresh_reads"], summary["grown_reads"]
        reads.add_row(
            labels[name],
            _ms(fresh["versions_ms"]),
            _ms(fresh["version_at_ms"]),
            _ms(grown["versions_ms"]),
            _ms(grown["version_at_ms"]),
            _ms(grown["deep_version_at_ms"]),
            " / ".join(
                _ms(grown[key]) if key in grown else "-"
                for key in ("versions_raw_ms", "version_at_raw_ms", "deep_version_at_raw_ms")
            ),
        )
    console.print(reads)
