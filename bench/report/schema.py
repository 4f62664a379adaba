"""The benchmark report: a typed, versioned `report.json`, read back strictly, and its Markdown table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from runtimes.common.errors import InputError
from runtimes.common.manifest import write_text_atomically
from runtimes.measure import LatencyStats, MachineInfo

SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
# The figure each task is judged by in tables, plots and the Pareto front.
PRIMARY_METRIC = {"text-classification": "accuracy", "token-classification": "entity_f1",
                  "question-answering": "f1"}


class _Record(BaseModel):
    # Strict on read: a typo or a field from a newer schema is an error, never silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Record):
    """Per-call latency as a user sees it (percentiles, disturbances included), and `best_ms`: the
    mean over the inputs of each input's fastest call, what the computation costs when nothing else
    gets in the way. Speed-ups are ratios of `best_ms`, which a loaded machine moves far less."""

    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iqr_ms: float
    best_ms: float | None = None

    @classmethod
    def of(cls, stats: LatencyStats, best_ms: float | None = None) -> Latency:
        return cls(**dataclasses.asdict(stats), best_ms=best_ms)

    @property
    def cost_ms(self) -> float:
        """What speed-ups compare: `best_ms` when measured, else the median."""
        return self.best_ms if self.best_ms is not None else self.p50_ms


class ShapeLatency(_Record):
    """The network alone on fixed-shape inputs: batch x sequence tokens."""

    batch: int
    sequence: int
    latency: Latency


class Throughput(_Record):
    batch: int
    items_per_s: float  # texts / summed fastest time of each batch
    latency: Latency  # per batch


class Phase(_Record):
    phase: str
    seconds: float
    rss_mb: float


class Footprint(_Record):
    """A fresh process that loads the model and serves `requests` one by one (imports included)."""

    requests: int
    wall_s: float  # spawn to exit
    first_prediction_s: float | None  # since the child's first line: import + load + first call
    peak_rss_mb: float
    phases: list[Phase]


class GateReference(_Record):
    """Per-round model time / reference time, for the gate's saved-report mode (`bench.gate.reference`)."""

    reference_version: int
    workload: str  # digest of the requests and settings
    block: int  # inputs per block
    repeats: int  # passes over the inputs per block
    threads: int | None
    normalised: list[float]
    model_p50_ms: float
    reference_p50_ms: float


class Subject(_Record):
    name: str
    kind: Literal["artifact", "checkpoint"]
    path: str
    task: str
    backend: str
    size_mb: float
    int8_target: str | None = None  # the CPU class an artifact's int8 was made for (manifest.cpu), if any
    quality: dict[str, float] = {}
    quality_examples: int = 0
    latency: Latency | None = None  # batch 1, end to end (tokenise, run, decode), real texts
    model_latency: Latency | None = None  # batch 1, the network alone on the same token ids
    shapes: list[ShapeLatency] = []
    throughput: Throughput | None = None
    footprint: Footprint | None = None
    gate_reference: GateReference | None = None

    @property
    def primary(self) -> float | None:
        return self.quality.get(PRIMARY_METRIC.get(self.task, ""))


class Machine(_Record):
    cpu_model: str
    architecture: str
    logical_cpus: int
    usable_cpus: int
    isa: list[str]
    threads: int | None
    os: str
    python: str
    versions: dict[str, str]
    load_average: list[float] = []
    int8_isa: str = ""  # the int8 class (runtimes.common.cpu): which int8 format is exact and fast here

    @classmethod
    def of(cls, info: MachineInfo) -> Machine:
        return cls(**{**info.to_dict(), "isa": list(info.isa), "load_average": list(info.load_average)})

    def summary(self) -> str:
        data = self.model_dump()
        return MachineInfo(**{**data, "isa": tuple(self.isa), "load_average": tuple(self.load_average)}).summary()


class Settings(_Record):
    threads: int | None
    latency_texts: int
    rounds: int
    passes: int = 1  # times each latency block went through its inputs (speed-ups use each input's fastest)
    warmup: int
    shapes: list[tuple[int, int]]
    throughput_batch: int
    footprint_requests: int
    data: str | None = None
    data_sha256: str | None = None


class Report(_Record):
    schema_version: Literal[1] = SCHEMA_VERSION
    created: str
    tool_version: str
    machine: Machine
    settings: Settings
    baseline: str
    subjects: list[Subject]

    def subject(self, name: str) -> Subject:
        for s in self.subjects:
            if s.name == name:
                return s
        raise InputError(f"the report has no subject {name!r}; it has: {', '.join(s.name for s in self.subjects)}")

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return write_text_atomically(folder / REPORT_NAME, self.model_dump_json(indent=2) + "\n")


def read_report(path: Path | str) -> Report:
    """Read a report.json (or the folder holding one); any deviation from the schema is an InputError."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"report {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a JSON report: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"{path} has report schema version {version!r}; this tool reads version {SCHEMA_VERSION}")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path} is not a valid report: {where}: {first['msg']} "
                         f"({exc.error_count()} problem(s))") from None
