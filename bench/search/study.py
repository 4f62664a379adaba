"""The search's Optuna study: one trial per candidate, enqueued cheapest first, shareable by workers.

The study lives in an RDB storage (SQLite in the search's work folder by default; any SQLAlchemy URL
with `--storage`), so an interrupted search resumes where it stopped and several processes (or
machines, with a shared database) can work through one study. Candidates are enqueued once, under a
lock, and a worker takes the next waiting trial, which Optuna hands to exactly one worker. A worker
that dies stops sending heartbeats; once its trial is stale it is failed and enqueued again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.search.space import Candidate, Finished, Status
from runtimes.common.errors import EdgeError, InputError

log = logging.getLogger(__name__)

PARAM = "candidate"
OUTCOME = "outcome"
ENQUEUED = "enqueued"  # set on the trials we enqueue; a trial without it was made up by the sampler
HEARTBEAT_S, GRACE_S = 5, 30


class TrialFailed(Exception):
    """A candidate that could not be built or measured; its reason is in the trial's outcome."""


class NoWorkLeft(Exception):
    """The worker asked for a trial when no enqueued one was waiting."""


def check_storage(storage_url: str) -> None:
    """Refuse a storage URL that SQLAlchemy cannot parse or has no driver for, before any work is done."""
    from sqlalchemy.engine import make_url

    try:
        make_url(storage_url).get_dialect()
    except Exception as exc:
        raise InputError(f"cannot open the study storage {storage_url!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def open_study(storage_url: str, name: str, lock: Path):
    """Create or load the study; `lock` keeps workers on this machine from creating it at the same time."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if storage_url.startswith("sqlite:///"):
        _write_ahead_log(Path(storage_url[len("sqlite:///"):]), lock)
    with _lock(lock):  # creating the tables and the study races between processes otherwise
        with warnings.catch_warnings():  # heartbeats are marked experimental; they are what resuming relies on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                storage = RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                                     engine_kwargs={"connect_args": {"timeout": 60}}
                                     if storage_url.startswith("sqlite") else None)
            except Exception as exc:
                raise InputError(f"cannot open the study storage {storage_url!r}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        try:
            return optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        except Exception as exc:
            if "UNIQUE" not in str(exc) and "IntegrityError" not in type(exc).__name__:
                raise
            return optuna.load_study(study_name=name, storage=storage)


def _write_ahead_log(db: Path, lock: Path) -> None:
    """SQLite in WAL mode (it stays so): readers never block the writer, so workers and their heartbeat
    threads do not fail with "database is locked" while another process commits."""
    import sqlite3

    with _lock(lock):
        db.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(db, timeout=60)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def enqueue(study, candidates: list[Candidate], lock: Path) -> int:
    """Enqueue, in order, every candidate that has no trial yet, and again those whose last try failed or
    was not started for want of time (`retry` in its outcome): a rerun is how a user resumes. Return how
    many were added."""
    import optuna

    with _lock(lock):
        trials = study.get_trials(deepcopy=False)
        have = {_name(t) for t in trials}
        open_ = {_name(t) for t in trials
                 if t.state in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)}
        done = outcomes(study)
        added = 0
        for c in candidates:
            last = done.get(c.name)
            again = last is not None and (last["status"] == Status.FAILED.value or last.get("retry", False))
            if c.name not in open_ and (c.name not in have or again):
                study.enqueue_trial({PARAM: c.name}, user_attrs={ENQUEUED: c.name})
                added += 1
        return added


def _name(trial) -> str | None:
    return trial.params.get(PARAM) or trial.user_attrs.get(ENQUEUED)


def outcomes(study) -> dict[str, dict[str, Any]]:
    """The latest finished outcome per candidate name (a retry replaces a failed or skipped try)."""
    import optuna

    found: dict[str, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        outcome = t.user_attrs.get(OUTCOME)
        if outcome is None or t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            continue
        previous = found.get(outcome["name"])
        if (previous is None or previous["status"] in (Status.FAILED.value, Status.SKIPPED.value)
                or outcome["status"] != Status.FAILED.value):  # a failed retry does not hide a measured result
            found[outcome["name"]] = outcome
    return found


def finished(study) -> list[Finished]:
    return [Finished(o["name"], Status(o["status"]), o["size_rank"], o.get("drop_bound"), o.get("lineage", "teacher"))
            for o in outcomes(study).values()]


def pending(study) -> tuple[int, int]:
    """(waiting, running) trials."""
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return states.count(optuna.trial.TrialState.WAITING), states.count(optuna.trial.TrialState.RUNNING)


def work(study, names: list[str], run_candidate: Callable[[str], dict[str, Any]], wait_for_others: bool = True,
         on_idle: Callable[[int], None] | None = None) -> int:
    """Take waiting trials until none is left; return how many this worker ran.

    `run_candidate(name)` returns the outcome (a dict with at least name, status and size_rank). With
    `wait_for_others`, a worker that finds nothing waiting waits for trials still running elsewhere (or
    left running by a killed process: they go stale and come back as waiting).
    """
    import optuna
    from optuna.storages import fail_stale_trials

    ran = 0

    def objective(trial) -> float:
        if ENQUEUED not in trial.user_attrs:
            raise NoWorkLeft()
        name = trial.suggest_categorical(PARAM, names)  # an enqueued trial gets its fixed candidate
        outcome = run_candidate(name)
        trial.set_user_attr(OUTCOME, outcome)
        status = Status(outcome["status"])
        if status is Status.SKIPPED:
            raise optuna.TrialPruned(outcome.get("reason", ""))
        if status is Status.FAILED:
            raise TrialFailed(outcome.get("reason", ""))
        return float(outcome["speedup"])

    while True:
        waiting, running = pending(study)
        if waiting == 0:
            if running == 0 or not wait_for_others:
                return ran
            if on_idle:
                on_idle(running)
            time.sleep(HEARTBEAT_S)
            fail_stale_trials(study)  # a killed worker's trial comes back as waiting after the grace period
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed, EdgeError))
        except NoWorkLeft:  # another worker took the last waiting trial between our look and our ask
            continue
        ran += 1
