"""The table ``python -m bench`` prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_results(results: dict[str, Any], labels: dict[str, str]) -> None:
    """Print the write and read tables of one run."""
    sizes = results["sizes"]
    console = Console()
    writes = Table(
        title=f"Writes: {sizes['objects']:,} objects in commits of {sizes['batch']}, "
        f"{sizes['updates']} updates each; median of {results['repetitions']} "
        "(ratio to plain taken per repetition)",
    )
    writes.add_column("system")
    for workload in ("W1 insert", "W2 update", "W3 delete"):
        writes.add_column(f"{workload} s", justify="right")
        writes.add_column("ratio", justify="right")
        writes.add_column("stmts/commit (100 | 10)", justify="right")
    for name, summary in results["systems"].items():
        cells = [labels[name]]
        for workload in ("insert", "update", "delete"):
            measured = summary[workload]
            cells += [
                f"{measured['seconds']:.2f}",
                f"{measured['ratio']:.2f}x",
                f"{measured['statements_per_commit']:g} | "
                f"{measured['statements_per_commit_of_10']:g}",
            ]
        writes.add_row(*cells)
    console.print(writes)

    reads = Table(
        title="History reads: median ms per call; W4/W5 on the fresh history, W6 at "
        f"{sizes['history_rows']:,} rows (version_at on one object with "
        f"{sizes['deep_versions']:,} versions in the last column)",
    )
    reads.add_column("system")
    for column in ("W4 versions()", "W5 version_at", "W6 versions()", "W6 version_at"):
        reads.add_column(column, justify="right")
    reads.add_column("W6 deep version_at", justify="right")
    reads.add_column("W6 rows", justify="right")
    for name, summary in results["systems"].items():
        fresh = summary.get("fresh_reads")
        grown = summary.get("grown_reads")
        if fresh is None or grown is None:
            continue
        reads.add_row(
            labels[name],
            _ms(fresh["versions_ms"]),
            _ms(fresh["version_at_ms"]),
            _ms(grown["versions_ms"]),
            _ms(grown["version_at_ms"]),
            _ms(grown["deep_version_at_ms"]),
            f"{grown['history_rows']:,}",
        )
    console.print(reads)
