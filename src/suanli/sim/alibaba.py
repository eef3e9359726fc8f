"""Loader of Alibaba's 2023 GPU-sharing cluster trace ("openb", from the ATC'23 paper
"Beware of Fragmentation"): the node list and the pod lists, as scheduler records.

``openb_node_list_all_node.csv``: ``sn, cpu_milli, memory_mib, gpu, model``, 1,523 nodes
(the CPU-only ones have ``gpu`` 0 and no model) holding 6,212 GPUs. ``openb_pod_list_*.csv``:
``name, cpu_milli, memory_mib, num_gpu, gpu_milli`` and, in most files, ``gpu_spec``
(allowed GPU models joined by ``|``), ``qos``, ``pod_phase``, ``creation_time``,
``deletion_time``, ``scheduled_time`` (seconds). ``gpu_milli`` is the share of one GPU a pod
asks for when ``num_gpu`` is 1 (1000 = all of it).

GPU models map to catalog names where the catalog has them (``CHIPS``); the rest (V100
32 GB, the undisclosed G1-G3) keep the trace's name, so chip constraints still match.
How pods become workloads (``pod_workloads``) is a reading of the trace, stated there.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from suanli.policy.snapshot import TenantView
from suanli.scheduler.workload import WHOLE, ChipConstraint, NodeView, Workload

__all__ = [
    "CHIPS",
    "AlibabaFleet",
    "AlibabaPod",
    "load_nodes",
    "load_pods",
    "pod_workloads",
]

CHIPS: Mapping[str, str] = {
    "V100M16": "Tesla V100 SXM2",
    "P100": "Tesla P100 16GB",
    "T4": "Tesla T4",
    "A10": "A10",
}
"""Trace GPU model -> chip catalog model, where the catalog has that chip."""

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


@dataclass(frozen=True, slots=True)
class AlibabaFleet:
    """The GPU nodes as ``NodeView``s, and how many nodes had no GPU."""

    nodes: tuple[NodeView, ...]
    cpu_only: int

    @property
    def total_nodes(self) -> int:
        return len(self.nodes) + self.cpu_only

    @property
    def gpus(self) -> int:
        return sum(n.accelerators for n in self.nodes)


@dataclass(frozen=True, slots=True)
class AlibabaPod:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    gpu_spec: tuple[str, ...]  # allowed trace GPU models; empty = any
    qos: str
    phase: str
    creation: float | None
    deletion: float | None
    scheduled: float | None


def _rows(path: Path, required: Iterable[str]) -> Iterable[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: missing columns {', '.join(missing)}")
        yield from enumerate(reader, start=2)


def _int(row: Mapping[str, str], column: str, where: str) -> int:
    text = (row.get(column) or "").strip()
    try:
        value = int(float(text)) if text else 0
    except ValueError:
        raise ValueError(f"{where}: {column} is not a number: {text!r}") from None
    if value < 0:
        raise ValueError(f"{where}: {column} is negative")
    return value


def _time(row: Mapping[str, str], column: str, where: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} is not a number: {text!r}") from None


def load_nodes(
    path: str | Path,
    *,
    data_center: str = "openb",
    country: str = "CN",
    chips: Mapping[str, str] = CHIPS,
    island_size: int = 0,
) -> AlibabaFleet:
    """The node list as one data center. ``island_size`` > 0 groups consecutive nodes of a
    model into islands of that many nodes (the trace has no topology)."""
    path = Path(path)
    nodes: list[NodeView] = []
    cpu_only = 0
    seen: dict[str, int] = {}
    for number, row in _rows(path, NODE_COLUMNS):
        where = f"{path.name}: line {number}"
        gpus = _int(row, "gpu", where)
        model = (row.get("model") or "").strip()
        if gpus == 0 or not model:
            cpu_only += 1
            continue
        chip = chips.get(model, model)
        i = seen[chip] = seen.get(chip, -1) + 1
        island = f"{model}-{i // island_size}" if island_size > 0 else ""
        nodes.append(NodeView(row["sn"].strip(), data_center, country, chip, gpus, island))
    return AlibabaFleet(tuple(nodes), cpu_only)


def load_pods(path: str | Path) -> list[AlibabaPod]:
    """Every pod of a pod list, CPU-only ones included (``num_gpu`` 0)."""
    path = Path(path)
    pods = []
    for number, row in _rows(path, POD_COLUMNS):
        where = f"{path.name}: line {number}"
        spec = tuple(dict.fromkeys(s.strip() for s in (row.get("gpu_spec") or "").split("|")))
        pods.append(
            AlibabaPod(
                name=row["name"].strip(),
                cpu_milli=_int(row, "cpu_milli", where),
                memory_mib=_int(row, "memory_mib", where),
                num_gpu=_int(row, "num_gpu", where),
                gpu_milli=_int(row, "gpu_milli", where),
                gpu_spec=tuple(s for s in spec if s),
                qos=(row.get("qos") or "").strip(),
                phase=(row.get("pod_phase") or "").strip(),
                creation=_time(row, "creation_time", where),
                deletion=_time(row, "deletion_time", where),
                scheduled=_time(row, "scheduled_time", where),
            )
        )
    return pods


def pod_workloads(
    pods: Iterable[AlibabaPod],
    *,
    tenant: TenantView = TenantView("alibaba", "CN", True),
    chips: Mapping[str, str] = CHIPS,
) -> list[Workload]:
    """GPU pods as workloads; CPU-only pods are left out.

    The reading: one pod is one gang on one node (``num_gpu`` devices, or ``gpu_milli`` of
    one when it asks for one); ``gpu_spec`` is a chip constraint; best-effort pods (``qos``
    BE) are spot work, the others high priority; latency-sensitive pods (LS) are inference,
    the rest training; ``submitted_at`` is the creation time and ``runtime_s`` the time to
    deletion where the trace has both."""
    out = []
    for pod in pods:
        if pod.num_gpu == 0:
            continue
        milli = pod.gpu_milli if pod.num_gpu == 1 and 0 < pod.gpu_milli < WHOLE else WHOLE
        models = frozenset(chips.get(s, s) for s in pod.gpu_spec)
        runtime = None
        if pod.creation is not None and pod.deletion is not None:
            runtime = max(pod.deletion - pod.creation, 0.0)
        out.append(
            Workload(
                id=pod.name,
                tenant=tenant,
                kind="inference" if pod.qos == "LS" else "training",
                accelerators=pod.num_gpu,
                gpu_milli=milli,
                chips=ChipConstraint(models),
                priority="spot" if pod.qos == "BE" else "high",
                submitted_at=pod.creation or 0.0,
                runtime_s=runtime,
            )
        )
    return out
