"""Hardware detection: recorded tool output in, devices out; no monkeypatching.

Vendor tools are replaced by :class:`FakeRunner` (a :data:`Runner` that answers from a
table of recorded outputs), ``pynvml`` by :class:`FakeNvml` and ``/proc`` by fixture
directories passed as ``proc_root``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from suanli.agent.detect import (
    DEFAULT_ORDER,
    Device,
    NvmlDetector,
    detect_host,
    make_detector,
    parse_npu_smi_info,
    parse_query_csv,
    run_command,
)
from suanli.agent.detect.cpu import parse_cpuinfo, parse_meminfo, read_cpu_info
from suanli.agent.detect.npu_smi import COMMAND as NPU_SMI
from suanli.agent.detect.npu_smi import parse_version
from suanli.agent.detect.nvidia_smi import QUERY, TABLE, parse_driver_version
from suanli.errors import ValidationError

FIXTURES = Path(__file__).parent / "fixtures"
DGX = FIXTURES / "dgx-h100"
ATLAS = FIXTURES / "atlas800-910b"
CPU_ONLY = FIXTURES / "cpu-only"

H100 = "NVIDIA H100 80GB HBM3"
H100_BYTES = 85_520_809_984  # what NVML reports as total memory: 81559 MiB


def fixture(path: Path) -> str:
    return path.read_text(encoding="utf-8")


QUERY_CSV = fixture(DGX / "nvidia-smi-query.csv")
SMI_TABLE = fixture(DGX / "nvidia-smi.txt")
NPU_INFO = fixture(ATLAS / "npu-smi-info.txt")


class FakeRunner:
    """A Runner that answers from recorded outputs and remembers what it was asked."""

    def __init__(self, outputs: Mapping[tuple[str, ...], str | None] | None = None) -> None:
        self.outputs = dict(outputs or {})
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> str | None:
        self.calls.append(tuple(argv))
        return self.outputs.get(tuple(argv))


class FakeNVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str = H100
    uuid: str = "GPU-3c2f8a1e-52b7-4d1a-9e0c-7f41b2d6a915"
    total_bytes: int = H100_BYTES
    temperature: int = 33
    utilization: int = 12
    ecc: int | None = 0  # None: the GPU does not support ECC counters
    power_mw: int = 69_450


@dataclass
class _Memory:
    total: int


@dataclass
class _Utilization:
    gpu: int
    memory: int


class FakeNvml:
    """Stands in for the ``pynvml`` module: same function names, recorded answers."""

    NVMLError = FakeNVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        fail_init: bool = False,
        fail_count: bool = False,
        driver: bytes = b"550.127.05",
    ) -> None:
        self.gpus = list(gpus)
        self.fail_init = fail_init
        self.fail_count = fail_count
        self.driver = driver
        self.shutdowns = 0

    def nvmlInit(self) -> None:  # noqa: N802
        if self.fail_init:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return self.driver

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        if self.fail_count:
            raise FakeNVMLError("Unknown Error")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:  # noqa: N802
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:  # noqa: N802
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> bytes:  # noqa: N802
        return handle.uuid.encode()

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> _Memory:  # noqa: N802
        return _Memory(total=handle.total_bytes)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:  # noqa: N802
        assert sensor == self.NVML_TEMPERATURE_GPU
        return handle.temperature

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> _Utilization:  # noqa: N802
        return _Utilization(gpu=handle.utilization, memory=3)

    def nvmlDeviceGetTotalEccErrors(  # noqa: N802
        self, handle: FakeGpu, error_type: int, counter_type: int
    ) -> int:
        assert (error_type, counter_type) == (1, 0)
        if handle.ecc is None:
            raise FakeNVMLError("Not Supported")
        return handle.ecc

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:  # noqa: N802
        return handle.power_mw


NO_NVML = FakeNvml(fail_init=True)


def replace_line(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"fixture should contain {old!r} once"
    return text.replace(old, new)


# --- nvidia-smi ------------------------------------------------------------------------


def test_nvidia_smi_query_fixture_parses_to_eight_h100() -> None:
    devices = parse_query_csv(QUERY_CSV)

    assert [d.index for d in devices] == list(range(8))
    assert {d.name for d in devices} == {H100}
    assert {d.vendor for d in devices} == {"nvidia"}
    assert {d.memory_mb for d in devices} == {81559}
    assert {d.health for d in devices} == {"ok"}
    assert all(d.uuid is not None and d.uuid.startswith("GPU-") for d in devices)
    assert len({d.uuid for d in devices}) == 8
    assert devices[0].temperature_c == 31
    assert devices[0].utilization_pct == 0
    assert devices[0].ecc_errors == 0
    assert devices[0].power_w == pytest.approx(69.45)
    assert devices[5].power_w is None  # "[N/A]" in the fixture


def test_nvidia_smi_uncorrected_ecc_errors_flag_the_gpu_critical() -> None:
    line = QUERY_CSV.splitlines()[3]
    broken = line.replace(", 0, 0, 72.30", ", 0, 2, 72.30")
    devices = parse_query_csv(replace_line(QUERY_CSV, line, broken))

    assert devices[3].ecc_errors == 2
    assert devices[3].health == "critical"
    assert [d.index for d in devices if d.health != "ok"] == [3]


def test_nvidia_smi_not_supported_values_become_none() -> None:
    csv = "0, Tesla T4, [N/A], 15360, [N/A], [Not Supported], [Not Supported], N/A\n"
    (device,) = parse_query_csv(csv)

    assert device.name == "Tesla T4"
    assert device.memory_mb == 15360
    assert device.uuid is None
    assert device.temperature_c is None
    assert device.utilization_pct is None
    assert device.ecc_errors is None
    assert device.power_w is None
    assert device.health == "ok"


def test_nvidia_smi_driver_version_comes_from_the_table_banner() -> None:
    assert parse_driver_version(SMI_TABLE) == "550.127.05"
    assert parse_driver_version("no banner here") is None


# --- npu-smi ---------------------------------------------------------------------------


def test_npu_smi_fixture_parses_to_eight_910b3() -> None:
    devices = parse_npu_smi_info(NPU_INFO)

    assert [d.index for d in devices] == list(range(8))
    assert {d.name for d in devices} == {"910B3"}
    assert {d.vendor for d in devices} == {"huawei"}
    assert {d.memory_mb for d in devices} == {65536}
    assert {d.health for d in devices} == {"ok"}
    assert {d.uuid for d in devices} == {None}
    assert devices[0].power_w == pytest.approx(93.8)
    assert devices[0].temperature_c == 40
    assert devices[0].utilization_pct == 0
    assert parse_version(NPU_INFO) == "23.0.6"


@pytest.mark.parametrize(
    ("printed", "health"),
    [("Alarm", "critical"), ("Critical", "critical"), ("Warning", "warning"), ("NA", "unknown")],
)
def test_npu_smi_health_column_is_mapped(printed: str, health: str) -> None:
    row = "| 3     910B3               | OK            |"
    text = replace_line(NPU_INFO, row, f"| 3     910B3               | {printed:<14}|")
    devices = parse_npu_smi_info(text)

    assert devices[3].health == health
    assert [d.index for d in devices if d.health != "ok"] == [3]


A3_SAMPLE = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 25.2.1                   Version: 25.2.1                                               |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
+===========================+===============+====================================================+
| 0     Ascend910           | OK            | 171.2       37                0    / 0             |
| 0     0                   | 0000:9D:00.0  | 4           0    / 0          3120 / 65536         |
+------------------------------------------------------------------------------------------------+
| 0     Ascend910           | Warning       | -           38                0    / 0             |
| 1     1                   | 0000:9F:00.0  | 0           0    / 0          2890 / 65536         |
+===========================+===============+====================================================+
"""


def test_npu_smi_two_chips_per_npu_are_indexed_by_phy_id() -> None:
    first, second = parse_npu_smi_info(A3_SAMPLE)

    assert (first.index, second.index) == (0, 1)
    assert first.name == second.name == "Ascend910"
    assert first.utilization_pct == 4
    assert second.power_w is None  # "-": power is reported once per NPU
    assert second.health == "warning"
    assert parse_version(A3_SAMPLE) == "25.2.1"


# --- malformed output ------------------------------------------------------------------

_NPU_ROW_0, _NPU_CHIP_0 = NPU_INFO.splitlines()[6:8]  # NPU 0: "| 0     910B3 ..." and its chip


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_query_csv, f"0, {H100}, GPU-1234, 81559\n", "has 4 comma-separated values"),
        (parse_query_csv, f"0, {H100}, GPU-1, lots, 31, 0, 0, 69.4\n", "'lots' is not an integer"),
        (parse_query_csv, "x, y, z, 1, 2, 3, 4, 5\n", "index 'x' is not an integer"),
        (parse_query_csv, "0, , GPU-1, 81559, 31, 0, 0, 69.4\n", "lacks a GPU index or name"),
        (parse_npu_smi_info, "dcmi module initialize failed. ret is -8005\n", "no device table"),
        (parse_npu_smi_info, NPU_INFO.split(_NPU_CHIP_0)[0], "has no second (Chip / Bus-Id) row"),
        (
            parse_npu_smi_info,
            NPU_INFO.replace(_NPU_CHIP_0, "| 0                         | 0000:C1:00.0  | 0  N/A |"),
            "no 'used / total' memory column",
        ),
        (
            parse_npu_smi_info,
            NPU_INFO.replace(_NPU_ROW_0, "| 0     910B3               | OK            |"),
            "not a three-column device row",
        ),
        (
            parse_npu_smi_info,
            NPU_INFO.replace(_NPU_ROW_0, _NPU_ROW_0.replace("| 0     910B3  ", "| 910B3         ")),
            "should start with an NPU id and a name",
        ),
    ],
)
def test_malformed_output_raises_validation_error(parse: object, text: str, message: str) -> None:
    assert callable(parse)
    with pytest.raises(ValidationError) as caught:
        parse(text)

    assert message in caught.value.message
    assert caught.value.field in {"nvidia-smi", "npu-smi info"}


def test_malformed_output_names_the_line() -> None:
    text = NPU_INFO.replace(_NPU_CHIP_0, "| 0                         | 0000:C1:00.0  | 0  N/A |")
    with pytest.raises(ValidationError) as caught:
        parse_npu_smi_info(text)

    assert caught.value.line == 8


def test_malformed_tool_output_propagates_from_detect_host() -> None:
    runner = FakeRunner({QUERY: f"0, {H100}\n"})
    with pytest.raises(ValidationError, match="nvidia-smi: line 1"):
        detect_host(runner, nvml=NO_NVML, proc_root=CPU_ONLY)


# --- NVML ------------------------------------------------------------------------------


def test_nvml_path_reads_every_gpu_without_running_commands() -> None:
    gpus = [FakeGpu(uuid=f"GPU-00000000-0000-0000-0000-00000000000{i}") for i in range(8)]
    gpus[2] = FakeGpu(ecc=3)
    gpus[4] = FakeGpu(ecc=None)
    nvml = FakeNvml(gpus)
    runner = FakeRunner({QUERY: QUERY_CSV})

    host = detect_host(runner, nvml=nvml, proc_root=CPU_ONLY)

    assert runner.calls == []
    assert nvml.shutdowns == 1
    assert host.detector == "nvml"
    assert host.driver_version == "550.127.05"
    assert len(host.devices) == 8
    first = host.devices[0]
    assert first == Device(
        index=0,
        vendor="nvidia",
        name=H100,
        uuid="GPU-00000000-0000-0000-0000-000000000000",
        memory_mb=81559,
        health="ok",
        temperature_c=33,
        utilization_pct=12,
        ecc_errors=0,
        power_w=69.45,
    )
    assert host.devices[2].health == "critical"
    assert host.devices[4].ecc_errors is None
    assert host.devices[4].health == "ok"


def test_nvml_error_at_init_falls_through_to_nvidia_smi() -> None:
    runner = FakeRunner({QUERY: QUERY_CSV, TABLE: SMI_TABLE, NPU_SMI: NPU_INFO})

    host = detect_host(runner, nvml=FakeNvml(fail_init=True), proc_root=CPU_ONLY)

    assert host.detector == "nvidia-smi"
    assert host.driver_version == "550.127.05"
    assert len(host.devices) == 8
    assert runner.calls == [QUERY, TABLE]  # npu-smi is never asked


def test_nvml_error_while_listing_falls_through_and_shuts_down() -> None:
    nvml = FakeNvml([FakeGpu()], fail_count=True)

    assert NvmlDetector(nvml).detect() is None
    assert nvml.shutdowns == 1


def test_missing_pynvml_means_not_present() -> None:
    assert NvmlDetector(loader=lambda: None).detect() is None


def test_nvml_with_no_gpus_means_not_present() -> None:
    assert NvmlDetector(FakeNvml([])).detect() is None


# --- the fall-through order -------------------------------------------------------------


def test_npu_smi_is_tried_after_both_nvidia_paths() -> None:
    runner = FakeRunner({NPU_SMI: NPU_INFO})

    host = detect_host(runner, nvml=NO_NVML, proc_root=ATLAS)

    assert runner.calls == [QUERY, NPU_SMI]
    assert host.detector == "npu-smi"
    assert host.driver_version == "23.0.6"
    assert len(host.devices) == 8
    assert host.hostname == "atlas-a2-07"
    assert host.cpu_model == "Kunpeng-920"
    assert host.cpu_cores == 192
    assert host.memory_mb == 1_583_885_504 // 1024


def test_empty_nvidia_smi_output_falls_through() -> None:
    runner = FakeRunner({QUERY: "", NPU_SMI: NPU_INFO})

    assert detect_host(runner, nvml=NO_NVML, proc_root=ATLAS).detector == "npu-smi"


def test_no_accelerator_tool_means_cpu_only() -> None:
    runner = FakeRunner()

    host = detect_host(runner, nvml=NO_NVML, proc_root=CPU_ONLY)

    assert runner.calls == [QUERY, NPU_SMI]
    assert host.detector == "cpu"
    assert host.devices == ()
    assert host.driver_version is None
    assert host.hostname == "cpu-node-01"
    assert host.cpu_model == "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz"
    assert host.cpu_cores == 8
    assert host.memory_mb == 32_614_372 // 1024


def test_detectors_are_dispatched_by_name() -> None:
    runner = FakeRunner({NPU_SMI: NPU_INFO, QUERY: QUERY_CSV})

    assert DEFAULT_ORDER == ("nvml", "nvidia-smi", "npu-smi")
    assert [make_detector(n, runner, NO_NVML).name for n in DEFAULT_ORDER] == list(DEFAULT_ORDER)
    host = detect_host(runner, nvml=NO_NVML, proc_root=CPU_ONLY, order=["npu-smi"])
    assert host.detector == "npu-smi"
    assert runner.calls == [NPU_SMI]


def test_unknown_detector_name_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="did you mean 'npu-smi'"):
        make_detector("npu_smi")


# --- CPU and /proc ---------------------------------------------------------------------


def test_cpu_only_fixture() -> None:
    cpu = read_cpu_info(CPU_ONLY)

    assert (cpu.model, cpu.cores, cpu.memory_mb) == (
        "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz",
        8,
        31_849,
    )


def test_unknown_arm_core_is_reported_as_unknown() -> None:
    text = "processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x000\n"

    assert parse_cpuinfo(text) == ("unknown", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MemFree:  100 kB\n", "no MemTotal line"),
        ("MemTotal:       lots kB\n", "should read 'MemTotal: <n> kB'"),
    ],
)
def test_malformed_meminfo_raises_validation_error(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_meminfo(text)


def test_device_rejects_an_unknown_health() -> None:
    with pytest.raises(ValidationError, match="health 'fine'"):
        Device(index=0, vendor="nvidia", name=H100, uuid=None, memory_mb=None, health="fine")


# --- the real machine ------------------------------------------------------------------


def test_run_command_returns_none_for_missing_or_failing_commands() -> None:
    assert run_command(["suanli-no-such-tool"]) is None
    assert run_command(["false"]) is None
    assert run_command(["echo", "hi"]) == "hi\n"


_HAS_ACCELERATOR = any(shutil.which(tool) for tool in ("nvidia-smi", "npu-smi")) or any(
    Path(dev).exists() for dev in ("/dev/nvidiactl", "/dev/davinci_manager")
)


@pytest.mark.skipif(_HAS_ACCELERATOR, reason="this machine has an accelerator")
def test_detect_host_on_this_machine_is_cpu_only() -> None:
    host = detect_host()

    assert host.detector == "cpu"
    assert host.devices == ()
    assert host.cpu_cores > 0
    assert host.memory_mb > 0
    assert host.hostname
    assert host.cpu_model
