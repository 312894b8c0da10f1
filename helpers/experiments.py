"""Sweeps: run one function at every point of a grid of hyperparameters and collect tidy rows.

Every sweep in the notebooks goes through ``sweep``, so each result is one row holding the
hyperparameters that produced it next to what was measured.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class Table(list):
    """A list of row dicts with a few conveniences for looking at sweep results."""

    def column(self, name: str) -> list:
        """The values of ``name`` in every row (a ``ValueError`` lists the columns there are)."""
        if self and name not in self[0]:
            raise ValueError(f"name must be one of the columns {', '.join(self[0])}, got {name!r}")
        return [row.get(name) for row in self]

    def where(self, **conditions: Any) -> Table:
        """The rows whose columns equal the given values, e.g. ``table.where(optimizer="adam")``."""
        return Table(r for r in self if all(r.get(k) == v for k, v in conditions.items()))

    def best(self, name: str, minimize: bool = True) -> dict:
        """The row with the lowest (or highest) finite value of ``name``."""
        rows = [r for r in self if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
        if not rows:
            raise ValueError(f"no row has a finite value in column {name!r}")
        return (min if minimize else max)(rows, key=lambda r: r[name])

    def to_markdown(self, columns: Sequence[str] | None = None, digits: int = 4) -> str:
        """A Markdown table of the scalar columns (or of ``columns``); floats to ``digits`` significant digits."""
        if not self:
            return "(no rows)"
        if columns is None:
            columns = [k for k, v in self[0].items() if v is None or isinstance(v, (int, float, str, bool))]

        def fmt(v: Any) -> str:
            if isinstance(v, float) and not isinstance(v, bool):
                return f"{v:.{digits}g}"
            return str(v)

        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in self]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:  # Jupyter shows a Table as a rendered table
        return self.to_markdown()


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, the first key varying slowest."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of name -> list of values, got {grid!r}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def sweep(fn: Callable[..., Any], grid: Mapping[str, Sequence] | Sequence[Mapping[str, Any]],
          progress: bool = False) -> Table:
    """Call ``fn(**point)`` for every point of ``grid`` and return one row per point.

    ``grid`` is a dict of name -> values (every combination is run, see ``grid_points``) or an
    explicit list of points (dicts), for searches that are not a full grid.

    ``fn`` returns a dict of results, or a ``History`` (anything with ``.summary()``): its summary
    becomes the row's columns and the object itself is kept under ``"history"`` for plotting.
    A row is ``{**point, **results}``.
    """
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if not grid or not all(isinstance(p, Mapping) for p in grid):
            raise ValueError(f"grid must be a non-empty dict of name -> values or a list of dicts, got {grid!r}")
        points = [dict(p) for p in grid]
    else:
        points = grid_points(grid)
    rows = Table()
    if progress:
        from tqdm.auto import tqdm

        points_iter = tqdm(points, desc="sweep", leave=False)
    else:
        points_iter = points
    for point in points_iter:
        result = fn(**point)
        if hasattr(result, "summary"):
            result = {**result.summary(), "history": result}
        if not isinstance(result, Mapping):
            raise ValueError(f"fn must return a dict or a History, got {type(result).__name__} at {point}")
        clash = set(point) & set(result)
        if clash:
            raise ValueError(f"fn's results reuse the grid names {sorted(clash)}; rename them")
        rows.append({**point, **result})
    return rows
