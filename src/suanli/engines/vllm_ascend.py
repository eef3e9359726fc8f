"""vLLM on Huawei Ascend NPUs through the vllm-ascend plugin.

Same ``vllm serve`` CLI: the plugin registers itself when installed. The NPUs a replica may
use are named by ``ASCEND_RT_VISIBLE_DEVICES``. Weights quantized with ModelSlim (W8A8,
W4A8 ...) are served with ``--quantization ascend``; Ascend has no FP8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from suanli.engines.base import DTYPES, register
from suanli.engines.vllm import VllmAdapter

ASCEND_QUANTIZED = ("int8", "int4", "w8a8", "w8a16", "w4a8", "w4a16")

PRECISIONS: dict[str, tuple[str, ...]] = {
    **{name: ("--dtype", dtype) for name, dtype in DTYPES.items()},
    **dict.fromkeys(ASCEND_QUANTIZED, ("--quantization", "ascend")),
}


@register
class VllmAscendAdapter(VllmAdapter):
    name = "vllm-ascend"
    stacks = frozenset({"CANN"})
    visible_devices_env = "ASCEND_RT_VISIBLE_DEVICES"
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = PRECISIONS
