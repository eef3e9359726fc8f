"""The packaged model catalog and the memory estimator built on it and the chip catalog."""

from suanli.models.catalog import (
    ENGINES,
    MLA,
    PRECISIONS,
    STACK_ENGINES,
    LocalSource,
    ModelCatalog,
    ModelInfo,
    MoE,
    UnknownModelError,
    load_models,
    parse_models,
)
from suanli.models.memory import (
    ENGINE_PRECISIONS,
    TP_SIZES,
    Fit,
    MemoryEstimate,
    chip_precisions,
    estimate,
    fits_on,
    plan,
)

__all__ = [
    "ENGINES",
    "ENGINE_PRECISIONS",
    "MLA",
    "PRECISIONS",
    "STACK_ENGINES",
    "TP_SIZES",
    "Fit",
    "LocalSource",
    "MemoryEstimate",
    "MoE",
    "ModelCatalog",
    "ModelInfo",
    "UnknownModelError",
    "chip_precisions",
    "estimate",
    "fits_on",
    "load_models",
    "parse_models",
    "plan",
]
