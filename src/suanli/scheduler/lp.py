"""The linear programs behind the round-based policies, solved with HiGHS.

Every program allocates *time fractions*: ``x[i, j]`` is the share of wall-clock time that
job ``i`` (or job class ``i``) should spend on ``scale_factor[i]`` GPUs of chip ``j``.
Common constraints, as in Gavel (OSDI 2020):

* ``0 <= x[i, j]`` and ``x[i, j] = 0`` where the job cannot run on chip ``j``;
* ``sum_j x[i, j] <= 1`` (a job runs on at most one chip type at a time);
* ``sum_i count[i] * scale_factor[i] * x[i, j] <= capacity[j]`` (GPUs per chip type).

Jobs that are interchangeable for a max-min program (same coefficients, same scale factor)
may be passed as classes with a ``count``: by symmetry and concavity of the minimum, giving
every member of a class the same allocation loses nothing, and the program stays small
however many jobs are queued.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
from highspy import _core

__all__ = ["LpError", "LpResult", "max_min_lp", "max_weighted_lp"]

FloatArray = npt.NDArray[np.float64]
_TIEBREAK_SLACK = 1e-7
_OPTIONS: dict[str, str | int | bool] = {"solver": "simplex", "presolve": "off"}
_LOCAL = threading.local()


class LpError(RuntimeError):
    """HiGHS did not return an optimal solution."""


@dataclass(frozen=True)
class LpResult:
    """The allocation (rows: jobs or classes, columns: chips) and the program's optimum."""

    x: FloatArray
    objective: float


def _as_2d(name: str, value: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def _as_1d(name: str, value: npt.ArrayLike, size: int) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have {size} entries, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def _solver() -> _core._Highs:
    """This thread's HiGHS instance, emptied. The bare binding: the ``highspy.Highs``
    wrapper prints a banner and sets up callbacks, which costs more than a small solve."""
    h: _core._Highs | None = getattr(_LOCAL, "highs", None)
    if h is None:
        h = _core._Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("random_seed", 0)
        for name, option in _OPTIONS.items():
            h.setOptionValue(name, option)
        _LOCAL.highs = h
    else:
        h.clearModel()
    return h


def _best_chip_if_it_fits(
    values: FloatArray, scale_factors: FloatArray, capacity: FloatArray, counts: FloatArray
) -> FloatArray | None:
    """Every row full-time on its best chip, if the chips hold that; else ``None``.

    When it fits, no allocation gives any row more (rows are capped at 1), so it is optimal
    for the max-min program (both stages) and for the weighted-sum program alike."""
    n, k = values.shape
    best = values.argmax(axis=1)
    useful = values[np.arange(n), best] > 0
    demand = np.bincount(best[useful], weights=(counts * scale_factors)[useful], minlength=k)
    if np.any(demand > capacity + 1e-9):
        return None
    x = np.zeros((n, k))
    x[np.flatnonzero(useful), best[useful]] = 1.0
    return x


def _base_columns(
    runnable: npt.NDArray[np.bool_], weight: FloatArray, capacity_use: FloatArray
) -> tuple[FloatArray, list[int], list[int], list[float]]:
    """Column-wise entries of the row-sum and capacity rows for the ``x`` variables.

    Rows ``0..n-1``: ``sum_j x[i, j] <= 1``; rows ``n..n+k-1``: capacity of chip ``j``;
    ``weight`` (n x k) adds one more entry per column in row ``n + k + i`` when non-empty.
    Returns upper bounds and the CSC ``start``, ``index`` and ``value`` lists.
    """
    n, k = runnable.shape
    upper = np.where(runnable, 1.0, 0.0).reshape(-1)
    has_weight = weight.size > 0
    per_col = 3 if has_weight else 2
    rows_sum = np.repeat(np.arange(n), k)
    rows_cap = n + np.tile(np.arange(k), n)
    cap_vals = capacity_use.reshape(-1)
    if has_weight:
        rows_w = n + k + rows_sum
        index = np.stack([rows_sum, rows_cap, rows_w], axis=1).reshape(-1)
        value = np.stack([np.ones(n * k), cap_vals, weight.reshape(-1)], axis=1).reshape(-1)
    else:
        index = np.stack([rows_sum, rows_cap], axis=1).reshape(-1)
        value = np.stack([np.ones(n * k), cap_vals], axis=1).reshape(-1)
    start = list(range(0, per_col * n * k + 1, per_col))
    return upper, start, index.tolist(), value.tolist()


def _run(h: _core._Highs, what: str) -> None:
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise LpError(f"{what}: HiGHS returned {h.modelStatusToString(status)}")


def max_min_lp(
    coefficients: npt.ArrayLike,
    scale_factors: npt.ArrayLike,
    capacity: npt.ArrayLike,
    counts: npt.ArrayLike | None = None,
    *,
    fill: bool = True,
) -> LpResult:
    """Maximise ``min_i sum_j coefficients[i, j] * x[i, j]`` (Gavel's max-min fairness).

    ``coefficients[i, j]`` is row ``i``'s normalised, weighted throughput on chip ``j``
    (zero where it cannot run). A max-min program has many optima: the minimum pins only
    the worst-off rows. With ``fill`` a second solve keeps every row at or above the
    optimal minimum and maximises the count-weighted sum of the same quantity, so spare
    capacity goes where it does the most and no chip idles by the solver's whim.
    ``objective`` is the optimal minimum.
    """
    a = _as_2d("coefficients", coefficients)
    n, k = a.shape
    sf = _as_1d("scale_factors", scale_factors, n)
    cap = _as_1d("capacity", capacity, k)
    cnt = np.ones(n) if counts is None else _as_1d("counts", counts, n)
    if n == 0:
        return LpResult(np.zeros((0, k)), 0.0)
    if np.any(sf < 1):
        raise ValueError("scale factors must be >= 1")
    runnable = a > 0
    active = runnable.any(axis=1)
    if not active.all():
        # a row that can run nowhere would pin the minimum at zero: solve without it
        sub = max_min_lp(a[active], sf[active], cap, cnt[active], fill=fill)
        x = np.zeros((n, k))
        x[active] = sub.x
        return LpResult(x, sub.objective)
    quick = _best_chip_if_it_fits(a, sf, cap, cnt)
    if quick is not None:
        return LpResult(quick, float(a.max(axis=1).min()))
    # scale so the best single-chip value of each program is about 1 (helps HiGHS; the
    # optimum of a max-min program is unchanged by one common factor)
    scale = float(a.max())
    a_scaled = a / scale
    upper, start, index, value = _base_columns(
        runnable, -a_scaled, (cnt * sf)[:, None] * np.ones((1, k))
    )
    # the t column: +1 in each fairness row (t - sum_j a x <= 0)
    start.append(start[-1] + n)
    index.extend(range(n + k, n + k + n))
    value.extend([1.0] * n)

    lp = highspy.HighsLp()
    lp.num_col_ = n * k + 1
    lp.num_row_ = n + k + n
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.concatenate([np.zeros(n * k), [1.0]])
    lp.col_lower_ = np.zeros(n * k + 1)
    lp.col_upper_ = np.concatenate([upper, [highspy.kHighsInf]])
    lp.row_lower_ = np.full(n + k + n, -highspy.kHighsInf)
    lp.row_upper_ = np.concatenate([np.ones(n), cap, np.zeros(n)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.a_matrix_.num_col_ = n * k + 1
    lp.a_matrix_.num_row_ = n + k + n
    h = _solver()
    h.passModel(lp)
    _run(h, "max-min fairness")
    t_opt = float(h.getSolution().col_value[n * k])
    if fill:
        h.changeColBounds(n * k, t_opt * (1.0 - _TIEBREAK_SLACK), highspy.kHighsInf)
        cost = (cnt[:, None] * a_scaled).reshape(-1)
        h.changeColsCost(n * k + 1, np.arange(n * k + 1), np.concatenate([cost, [0.0]]))
        _run(h, "max-min fairness (fill)")
    x = np.asarray(h.getSolution().col_value[: n * k], dtype=np.float64).reshape(n, k)
    return LpResult(np.clip(x, 0.0, 1.0), t_opt * scale)


def max_weighted_lp(
    values: npt.ArrayLike,
    scale_factors: npt.ArrayLike,
    capacity: npt.ArrayLike,
    floors: npt.ArrayLike | None = None,
    floor_coefficients: npt.ArrayLike | None = None,
) -> LpResult:
    """Maximise ``sum_ij values[i, j] * x[i, j]`` under the common constraints.

    With ``floors`` each row must also keep ``sum_j floor_coefficients[i, j] * x[i, j] >=
    floors[i]`` (a fairness floor); ``floor_coefficients`` defaults to ``values``. A floor
    that cannot be met makes the program infeasible (``LpError``); pass floors no higher
    than a max-min optimum.
    """
    v = _as_2d("values", values)
    n, k = v.shape
    sf = _as_1d("scale_factors", scale_factors, n)
    cap = _as_1d("capacity", capacity, k)
    if n == 0:
        return LpResult(np.zeros((0, k)), 0.0)
    if np.any(sf < 1):
        raise ValueError("scale factors must be >= 1")
    scale = float(v.max()) or 1.0
    runnable = v > 0
    if floors is None:
        quick = _best_chip_if_it_fits(v, sf, cap, np.ones(n))
        if quick is not None:
            return LpResult(quick, float(v.max(axis=1).sum()))
    if floors is not None:
        fl = _as_1d("floors", floors, n)
        fc = v if floor_coefficients is None else _as_2d("floor_coefficients", floor_coefficients)
        if fc.shape != v.shape:
            raise ValueError("floor_coefficients must have the shape of values")
        runnable = runnable | (fc > 0)
        upper, start, index, value = _base_columns(runnable, fc, sf[:, None] * np.ones((1, k)))
        rows = n + k + n
        row_lower = np.concatenate([np.full(n + k, -highspy.kHighsInf), fl])
        row_upper = np.concatenate([np.ones(n), cap, np.full(n, highspy.kHighsInf)])
    else:
        upper, start, index, value = _base_columns(
            runnable, np.zeros((0, 0)), sf[:, None] * np.ones((1, k))
        )
        rows = n + k
        row_lower = np.full(rows, -highspy.kHighsInf)
        row_upper = np.concatenate([np.ones(n), cap])
    lp = highspy.HighsLp()
    lp.num_col_ = n * k
    lp.num_row_ = rows
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = (v / scale).reshape(-1)
    lp.col_lower_ = np.zeros(n * k)
    lp.col_upper_ = upper
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.a_matrix_.num_col_ = n * k
    lp.a_matrix_.num_row_ = rows
    h = _solver()
    h.passModel(lp)
    _run(h, "weighted throughput")
    x = np.asarray(h.getSolution().col_value, dtype=np.float64).reshape(n, k)
    return LpResult(np.clip(x, 0.0, 1.0), h.getObjectiveValue() * scale)
