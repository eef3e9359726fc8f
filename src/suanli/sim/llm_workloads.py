"""A seeded generator of LLM-era workloads on H100/H800/H20/Ascend 910B fleets.

The Alibaba 2023 trace predates large language models: its pods ask for a share of a T4 or
a V100. This generator makes the work a mixed fleet sees now, for simulations and tests:

* **inference** deployments of chat models from the model catalog, each sized to the
  fewest devices that hold it (the perf model's memory fit on the reference chip), small
  models often on a share of one device;
* **LoRA fine-tunes** of 7B-72B models on 1-8 devices (at least as many as hold it);
* **training** gangs of 16-256 devices (likewise) within one island or one data center,
  with the tokens to process and, for some, a deadline;
* **rentals** of 1-8 whole devices.

Tenants come from China and a few other countries; some are unverified (no 3A090 chips for
them under the example rules); some bind their data to China (residency). A share of the
work is spot. Arrivals are a Poisson process; run times are log-normal around a
per-kind median. ``llm_fleet`` makes a matching fleet and compliance snapshot. Every
number here is a choice for simulation, named in ``LlmMix`` or below, not a measurement.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from suanli.models.catalog import load_models
from suanli.perf.model import PerfModel
from suanli.policy.snapshot import DataCenterView, FleetSnapshot, TenantView
from suanli.scheduler.workload import ChipConstraint, NodeView, Workload

__all__ = ["FLEET_CHIPS", "LlmMix", "llm_fleet", "llm_workloads", "serving_size", "smallest_fit"]

FLEET_CHIPS: dict[str, tuple[int, bool]] = {
    "H100 SXM": (2_000_000, False),  # operator cost per accelerator-hour (micro-units)
    "H800 SXM": (1_900_000, False),
    "H20": (1_000_000, False),
    "Ascend 910B": (1_100_000, True),
}
REFERENCE_CHIP = "H100 SXM"  # sizes deployments
SHARES = (250, 500)  # milli of one device tried for small models
TUNE_SIZES = (1, 2, 4, 8)  # devices of a LoRA fine-tune: at least what holds the model
TRAIN_SIZES = (16, 32, 64, 128, 256)  # devices of a training gang, likewise
MEDIAN_RUNTIME_S = {"inference": 21600.0, "finetune": 7200.0, "training": 86400.0, "rental": 3600.0}


@dataclass(frozen=True, slots=True)
class LlmMix:
    """Shares of the generated work (each between 0 and 1)."""

    inference: float = 0.5
    finetune: float = 0.25
    training: float = 0.1  # the rest are rentals
    spot: float = 0.25
    pinned_stack: float = 0.2  # CUDA-only or CANN-only
    residency: float = 0.3  # of tenants: data bound to China
    unverified: float = 0.1  # of tenants
    foreign: float = 0.2  # of tenants: not from China


@functools.cache
def serving_size(model_id: str, chip: str = REFERENCE_CHIP) -> tuple[int, int] | None:
    """(devices, milli of one) of the smallest placement of ``model_id`` on ``chip`` that
    the perf model's memory fit accepts (milli 1000 for whole devices); None beyond 8."""
    perf = _perf()
    for milli in SHARES:
        if perf.throughput("inference", model_id, chip, gpu_milli=milli).fits:
            return 1, milli
    count = smallest_fit("inference", model_id, (1, 2, 4, 8), chip)
    return None if count is None else (count, 1000)


@functools.cache
def smallest_fit(
    kind: str, model_id: str, counts: tuple[int, ...], chip: str = REFERENCE_CHIP
) -> int | None:
    """The fewest of ``counts`` devices of ``chip`` that hold ``kind`` work on the model."""
    perf = _perf()
    return next((n for n in counts if perf.throughput(kind, model_id, chip, count=n).fits), None)


@functools.cache
def _perf() -> PerfModel:
    return PerfModel()


def _tenants(rng: random.Random, count: int, mix: LlmMix) -> list[tuple[TenantView, bool]]:
    out = []
    for i in range(count):
        country = rng.choice(["SG", "MY", "AE", "DE"]) if rng.random() < mix.foreign else "CN"
        tenant = TenantView(f"tenant-{i:03d}", country, rng.random() >= mix.unverified)
        out.append((tenant, country == "CN" and rng.random() < mix.residency))
    return out


def llm_workloads(
    count: int,
    seed: int = 0,
    *,
    tenants: int = 50,
    mix: LlmMix = LlmMix(),
    arrivals_per_hour: float = 120.0,
    start: float = 0.0,
) -> list[Workload]:
    """``count`` workloads, the same for the same arguments."""
    rng = random.Random(seed)
    people = _tenants(rng, tenants, mix)
    chat = [m for m in load_models() if m.kind == "chat"]
    served = [m.id for m in chat if serving_size(m.id) is not None]
    tunable = [m.id for m in chat if 6e9 <= m.params <= 80e9 and m.architecture == "dense"]
    trainable = [m.id for m in chat if m.params <= 80e9 and m.architecture == "dense"]
    t = start
    out = []
    for i in range(count):
        t += rng.expovariate(arrivals_per_hour / 3600.0)
        tenant, bound = rng.choice(people)
        r = rng.random()
        kw: dict[str, object] = {}
        if r < mix.inference:
            kind, model = "inference", rng.choice(served)
            size = serving_size(model)
            assert size is not None
            kw.update(model_id=model, accelerators=size[0])
            if size[1] < 1000:
                kw["gpu_milli"] = size[1]
        elif r < mix.inference + mix.finetune:
            kind, model = "finetune", rng.choice(tunable)
            least = smallest_fit(kind, model, TUNE_SIZES) or TUNE_SIZES[-1]
            n = rng.choice([x for x in TUNE_SIZES if x >= least])
            kw.update(model_id=model, accelerators=n)
        elif r < mix.inference + mix.finetune + mix.training:
            kind, model = "training", rng.choice(trainable)
            least = smallest_fit(kind, model, TRAIN_SIZES) or TRAIN_SIZES[-1]
            n = rng.choice([x for x in TRAIN_SIZES if x >= least])
            tokens = float(rng.choice([1, 5, 20, 100])) * 1e9
            kw.update(model_id=model, accelerators=n, tokens=tokens)
            kw["topology"] = rng.choice(["island", "data_center"])
            if rng.random() < 0.5:
                kw["deadline"] = t + rng.choice([1, 3, 7]) * 86400.0
        else:
            kind = "rental"
            kw["accelerators"] = rng.choice([1, 2, 4, 8])
        if rng.random() < mix.pinned_stack:
            kw["chips"] = ChipConstraint(stacks=frozenset({rng.choice(["CUDA", "CANN"])}))
        if bound:
            kw.update(residency=frozenset({"CN"}), residency_sources=(f"{tenant.name}/data",))
        median = MEDIAN_RUNTIME_S[kind]
        out.append(
            Workload(
                id=f"llm-{seed}-{i:06d}",
                tenant=tenant,
                kind=kind,  # type: ignore[arg-type]
                priority="spot" if rng.random() < mix.spot else "high",
                submitted_at=t,
                runtime_s=round(median * math.exp(rng.gauss(0.0, 0.8)), 1),
                **kw,  # type: ignore[arg-type]
            )
        )
    return out


def llm_fleet(
    data_centers: int = 8,
    nodes_per_chip: int = 32,
    seed: int = 0,
    *,
    chips: Sequence[str] = tuple(FLEET_CHIPS),
    island_nodes: int = 16,
) -> tuple[list[NodeView], FleetSnapshot]:
    """Nodes of 8 devices and the compliance snapshot of their data centers: mostly in
    China (a third state-owned), some abroad; each data center holds two of ``chips``
    (Ascend 910B only in China), ``nodes_per_chip`` nodes each, in islands."""
    rng = random.Random(seed)
    nodes: list[NodeView] = []
    views = {}
    for d in range(data_centers):
        name = f"dc-{d:02d}"
        country = "CN" if d % 4 else rng.choice(["SG", "MY"])
        owner = "state" if country == "CN" and d % 3 == 0 else "private"
        views[name] = DataCenterView(name, country, owner)
        usable = [c for c in chips if country == "CN" or not FLEET_CHIPS.get(c, (0, False))[1]]
        for chip in rng.sample(usable, min(2, len(usable))):
            cost, domestic = FLEET_CHIPS.get(chip, (1_000_000, False))
            price = int(cost * rng.uniform(0.9, 1.1))
            for i in range(nodes_per_chip):
                island = f"{chip.split()[-1].lower()}-{i // island_nodes}"
                nodes.append(
                    NodeView(
                        f"{name}-{chip.replace(' ', '').lower()}-{i:03d}", name, country,
                        chip, 8, island, None, domestic, price,
                    )
                )  # fmt: skip
    return nodes, FleetSnapshot(views)
