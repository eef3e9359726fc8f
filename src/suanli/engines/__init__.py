"""Inference engines: one adapter per engine (launch command, health) and the supervisor that
keeps a replica's engine process alive.

    adapter = get_adapter("vllm")
    replica = Replica(adapter, LaunchSpec("qwen2-7b", "/models/qwen2-7b", port=free_port(),
                      devices=(0,)), run_dir, httpx.Client(timeout=2))
    replica.start()
    replica.poll()  # periodically: starting -> ready, crashed -> backoff -> starting ...
"""

from suanli.engines.base import EngineAdapter, LaunchSpec, adapters, get_adapter
from suanli.engines.supervisor import Replica, ReplicaState, RestartPolicy, free_port

__all__ = [
    "EngineAdapter",
    "LaunchSpec",
    "Replica",
    "ReplicaState",
    "RestartPolicy",
    "adapters",
    "free_port",
    "get_adapter",
]
