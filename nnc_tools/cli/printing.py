"""What several commands print alike: the project lines an edit changed, the weights NNC loads, JSON-safe values."""

from __future__ import annotations


def print_property_edits(rows) -> None:
    """(what, old, new) rows as a table: the project lines that changed."""
    width = max([len(what) for what, _, _ in rows] or [0])
    for what, old, new in rows:
        print(f"  {what:<{width}}  {old or '(empty)'} -> {new or '(empty)'}")


def print_weights(w) -> None:
    """Which parameters NNC loads from which job (a ``WeightAssignment``), those left to their initializer by name, and
    where the weights file is."""
    left = f" ({', '.join(w.left[:5])}{', ...' if len(w.left) > 5 else ''})" if w.left else ""
    print(f"{len(w.assigned)} parameters take their weights from job {w.job_id}; {len(w.left)} left to their initializer{left}")
    where = f"{w.results} (copied)" if w.copy_from is not None else f"{w.results}, where it is"
    print(f"NNC loads them from its project's results/{w.job_id}/results.nnp: {where}")


def printable(value):
    """Strings with bytes in no encoding (kept as lone surrogates so that files round-trip) as ``\\xff`` text: JSON
    readers refuse lone surrogates."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value
