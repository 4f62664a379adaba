"""The step cache: an expensive step's output, kept by what it was computed from.

An entry is keyed by (step config, parent model hash, data hash, toolchain version) and holds the
step's output folder plus `entry.json` (the sha256 of every file, and the lineage record). It is
built in a hidden folder and renamed into place in one step, so a killed run never leaves an entry
that a later run would use; on reuse every file is checked against its hash, and an entry that does
not match is dropped and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.common.manifest import sha256_file
from toolchain.version import __version__

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
_STALE_PARTIAL_SECONDS = 6 * 3600


def default_cache_dir() -> Path:
    """`$EDGE_TOOLCHAIN_CACHE/steps`, or `~/.cache/edge-toolchain/steps`."""
    root = os.environ.get("EDGE_TOOLCHAIN_CACHE") or Path.home() / ".cache" / "edge-toolchain"
    return Path(root) / "steps"


@dataclass(frozen=True)
class CacheHit:
    """A verified entry, copied into the run's own folder."""

    folder: Path
    record: dict[str, Any]
    extra: dict[str, Any]


class StepCache:
    """Step outputs under `root`, one folder per key. Counts its hits, misses and stores."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.hits = self.misses = self.stores = 0

    @staticmethod
    def key(config: dict[str, Any], parent_sha256: str, data_sha256: str | None) -> str:
        material = json.dumps({"config": config, "parent": parent_sha256, "data": data_sha256,
                               "toolchain": __version__}, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def fetch(self, key: str, into: Path) -> CacheHit | None:
        """Copy a verified entry into the (empty) folder `into`; None if there is none or it does not verify."""
        entry = self.root / key
        try:
            meta = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
            files: dict[str, str] = meta["files"]
            for name, digest in files.items():
                if Path(name).name != name or sha256_file(entry / name) != digest:
                    raise ValueError(f"{name} does not match its hash")
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("step cache entry %s is damaged (%s); computing it again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            self.misses += 1
            return None
        for name in files:
            shutil.copyfile(entry / name, into / name)
        self.hits += 1
        return CacheHit(into, meta["record"], meta.get("extra", {}))

    def store(self, key: str, folder: Path, record: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Keep a copy of `folder` (plain files only) under `key`; a failure to cache never fails the run."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._drop_stale_partials()
            partial = self.root / f".{key}.partial-{secrets.token_hex(4)}"
            partial.mkdir()
            try:
                files = {}
                for path in sorted(folder.iterdir()):
                    if path.is_file():
                        shutil.copyfile(path, partial / path.name)
                        files[path.name] = sha256_file(partial / path.name)
                meta = {"files": files, "record": record, "extra": extra or {}, "toolchain": __version__}
                (partial / ENTRY_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
                try:
                    os.rename(partial, self.root / key)
                except OSError:
                    if not (self.root / key).is_dir():
                        raise
                    return  # another run stored the same key first: its entry is as good as ours
                self.stores += 1
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError as exc:
            log.warning("could not store a step cache entry in %s: %s", self.root, exc)

    def _drop_stale_partials(self) -> None:
        now = time.time()
        for entry in self.root.glob(".*.partial-*"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_PARTIAL_SECONDS:
                    shutil.rmtree(entry)
