"""The checks behind lab 07's self-checks (training at scale): the learner's ``worker_share`` on named cases,
then in the real training job; the scaling efficiency on cases worked out by hand::

    from recsys_workshop.labchecks import training

    training.worker_share(worker_share)                                  # TF_CONFIG strings, one mistake each
    training.worker_share_in_job(worker_share, JOB, "artifacts/lab07/yours")  # 2 processes, yours swapped in
    training.scaling_efficiency(scaling_efficiency)                      # exercise 7.2

Each raises ``AssertionError`` naming the failed case, what was expected and what came back, and, for the
usual mistakes (the chief not counted, or counted as worker 0; an index off by one; the global batch for
the per-replica one; the ``task`` field ignored; an evaluator counted as a replica), what the mistake
probably is. The expected values come from :func:`recsys_workshop.train.tfconfig.worker_share`.

:func:`worker_share_in_job` writes a script that defines the learner's function (with the imports, helper
functions and constants it uses from the notebook) and runs the job's ``main`` with
``tfconfig.worker_share`` replaced by it; :class:`~recsys_workshop.train.launcher.LocalJob` starts it as a
chief and a worker, each with its ``TF_CONFIG``. No TensorFlow in this process.
"""

from __future__ import annotations

import ast
import dataclasses
import dis
import inspect
import json
import math
import re
import shutil
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["scaling_efficiency", "swap_script", "worker_share", "worker_share_in_job"]

HOST = "recsys-train-{role}-{index}.recsys.svc:2222"


def _tf_config(role: str, index: int, chief: int = 1, workers: int = 2, evaluator: bool = False,
               workers_first: bool = False) -> str:  # fmt: skip
    """The TF_CONFIG string of task ``role index`` in a TFJob with those replicas."""
    parts = {"chief": chief, "evaluator": int(evaluator), "worker": workers}
    order = ["worker", "chief", "evaluator"] if workers_first else ["chief", "evaluator", "worker"]
    cluster = {r: [HOST.format(role=r, index=i) for i in range(parts[r])] for r in order if parts[r]}
    return json.dumps({"cluster": cluster, "task": {"type": role, "index": index}, "environment": "cloud"})


@dataclasses.dataclass(frozen=True)
class _Case:
    name: str
    tf_config: str | None
    batch: int
    chief: int = 1
    workers: int = 0
    evaluator: bool = False
    workers_first: bool = False

    @property
    def call(self) -> str:
        return f"worker_share({self.name}, global batch {self.batch})"


def _case(role: str, index: int, batch: int, *, chief: int = 1, workers: int = 2, evaluator: bool = False,
          workers_first: bool = False, name: str = "") -> _Case:  # fmt: skip
    where = f"a chief and {workers} worker{'s' * (workers > 1)}" if chief else f"{workers} workers and no chief"
    name = name or f"{role} {index} of {where}" + (", with an evaluator" if evaluator else "")
    config = _tf_config(role, index, chief, workers, evaluator, workers_first)
    return _Case(name, config, batch, chief, workers, evaluator, workers_first)


CASES = [
    _Case("no TF_CONFIG (None: one process)", None, 256),
    _Case("an empty TF_CONFIG ('')", "", 256),
    _case("chief", 0, 2048, workers=1),
    _case("worker", 0, 2048, workers=1),
    _case("worker", 1, 1536),
    _case("worker", 0, 1536, chief=0, workers=3),
    _case("worker", 2, 1536, chief=0, workers=3),
    _case("worker", 1, 1536, evaluator=True),
    _case("worker", 0, 768, workers_first=True, name="worker 0 of a chief and 2 workers, the workers listed first"),
]
ERROR_CASES = [
    (_case("worker", 1, 1000), "1000 rows do not split evenly among 3 replicas"),
    (_case("worker", 2, 1536), "there is no worker 2 (the workers are 0 and 1)"),
    (_case("evaluator", 0, 1536, evaluator=True), "an evaluator does not train in sync"),
]


def _listed_position(case: _Case, role: str, index: int) -> int | None:
    """Where task ``role index`` comes among all the addresses of the cluster, in the order they are listed."""
    position = 0
    for listed_role, addresses in json.loads(case.tf_config)["cluster"].items():
        if listed_role == role:
            return position + index
        position += len(addresses)
    return None


def _mistakes(case: _Case, field: str, expected) -> list[tuple[str, Any]]:
    """``(advice, value)``: the value of ``field`` that each usual mistake gives in ``case`` (None: not here)."""
    task = json.loads(case.tf_config)["task"] if case.tf_config else {"type": "chief", "index": 0}
    role, index, chiefs, workers = task["type"], task["index"], case.chief, case.workers
    if field == "role":
        return [
            (
                "you ignored the task field, so every process would think it is the chief: read this process's "
                "tf['task']['type'] and ['index'] (the cluster part is the same for every process)",
                "chief",
            )
        ]
    if field == "index":
        advice = "task.index already counts from 0 within its role: use it as it is"
        return [(advice, index + 1), (advice, index - 1)]
    if field == "replicas":
        return [
            ("the chief trains too: count the chief and the workers", workers if chiefs else None),
            (
                "an evaluator does not train in sync: count only the chief and the workers",
                chiefs + workers + 1 if case.evaluator else None,
            ),
            (
                "this cluster has no chief: count the addresses listed under 'chief' (none here)",
                None if chiefs else workers + 1,
            ),
        ]
    if field == "per_replica_batch":
        return [
            ("that is the global batch: each replica takes global_batch_size // replicas rows of it", case.batch),
            ("the replicas share the global batch: divide it, do not multiply", case.batch * (case.batch // expected)),
        ]
    listed = _listed_position(case, role, index) if case.tf_config else None
    return [
        ("JSON objects have no order: number the chief first, then the workers, whatever order the cluster lists "
         "them in", listed if case.workers_first else None),
        ("an evaluator is not a replica: it takes no shard", listed if case.evaluator else None),
        ("the chief takes shard 0, so when there is a chief, worker i is shard 1 + i: you counted the chief as "
         "worker 0",
         index if chiefs and role == "worker" else None),
        ("this cluster has no chief: worker i is shard i (add the number of chiefs, 0 here)",
         None if chiefs else index + 1),
        ("shards count from 0: the chief (or worker 0 when there is no chief) is shard 0", expected + 1),
    ]  # fmt: skip


def _compare(case: _Case, got, expected) -> None:
    from recsys_workshop.train.tfconfig import WorkerShare

    if not isinstance(got, WorkerShare):
        shown = type(got).__name__
        raise AssertionError(f"{case.call} returned a {shown}, not a WorkerShare: return WorkerShare(role=..., "
                             "index=..., replicas=..., per_replica_batch=..., shard=...)")  # fmt: skip
    for field in ("role", "index", "replicas", "per_replica_batch", "shard"):
        want, have = getattr(expected, field), getattr(got, field)
        if want == have:
            continue
        message = f"{case.call}: expected {field}={want!r}, got {have!r}"
        for advice, value in _mistakes(case, field, want):
            if value is not None and value != want and have == value:
                message += f": {advice}"
                break
        raise AssertionError(message + (f"\n(its TF_CONFIG: {case.tf_config})" if case.tf_config else ""))


def _call(yours: Callable, case: _Case):
    try:
        return yours(case.tf_config, case.batch)
    except NotImplementedError as err:
        if str(err).startswith("Exercise "):
            raise  # not done yet: selfcheck.check says so
        raise AssertionError(f"{case.call} raised NotImplementedError: {err}") from err
    except Exception as err:  # noqa: BLE001 - any error of the learner's code, named with its case
        advice = ""
        if not case.tf_config:
            advice = ": no TF_CONFIG means one process: return WorkerShare('chief', 0, 1, global_batch_size, 0) " \
                     "before parsing anything"  # fmt: skip
        raise AssertionError(f"{case.call} raised {type(err).__name__}: {err}{advice}") from err


def worker_share(yours: Callable[[str | None, int], Any]) -> None:
    """Exercise 7.1 against :func:`recsys_workshop.train.tfconfig.worker_share`: every case of :data:`CASES`
    (each built to expose one usual mistake), then the cases of :data:`ERROR_CASES`, which must raise
    ``ValueError``."""
    from recsys_workshop.train import tfconfig

    for case in CASES:
        _compare(case, _call(yours, case), tfconfig.worker_share(case.tf_config, case.batch))
    for case, why in ERROR_CASES:
        try:
            got = yours(case.tf_config, case.batch)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001
            raise AssertionError(f"{case.call} raised {type(err).__name__}: {err}; raise ValueError instead, with a "
                                 "message that says why (the job prints it as 'error: ...')") from err  # fmt: skip
        raise AssertionError(f"{case.call}: expected ValueError ({why}), got {got!r}")


def scaling_efficiency(yours: Callable[[float, float, int], float]) -> None:
    """Exercise 7.2: cases worked out by hand (the speed-up divided by the number of workers), then the
    arguments that must raise ``ValueError``."""
    cases = [(1000.0, 2000.0, 2, 1.0), (1000.0, 1500.0, 2, 0.75), (1000.0, 4000.0, 8, 0.5), (900.0, 300.0, 2, 1 / 6)]
    for one, many, n, expected in cases:
        call = f"scaling_efficiency({one:g}, {many:g}, {n})"
        try:
            got = float(yours(one, many, n))
        except (TypeError, ValueError) as err:
            raise AssertionError(f"{call} raised {type(err).__name__}: {err}; expected {expected:.4g}") from err
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        mistakes = [
            ("that is the speed-up: divide it by the number of workers", many / one),
            ("the ratio is upside down: the speed-up is throughput_n / throughput_1", one / many / n),
            ("a percentage? Return a share (1.0 is perfect scaling)", 100 * expected),
            ("divide the speed-up by n, do not multiply", many / one * n),
        ]
        advice = next((a for a, value in mistakes if math.isclose(got, value, rel_tol=1e-9)), "")
        raise AssertionError(f"{call}: expected {expected:.4g}, got {got:.4g}" + (f": {advice}" if advice else ""))
    for bad, why in (((0.0, 10.0, 2), "a throughput of 0"), ((10.0, -5.0, 2), "a negative throughput"),
                     ((10.0, 10.0, 0), "0 workers")):  # fmt: skip
        try:
            got = yours(*bad)
        except ValueError:
            continue
        except ZeroDivisionError as err:
            raise AssertionError(f"scaling_efficiency{bad} raised ZeroDivisionError: check the arguments first and "
                                 f"raise ValueError ({why})") from err  # fmt: skip
        raise AssertionError(f"scaling_efficiency{bad}: expected ValueError ({why}), got {got!r}")


# ------------------------------------------------------------------------------------------- in the job


def _globals_used(code: types.CodeType) -> set[str]:
    """The global names ``code`` (and the functions and comprehensions nested in it) load."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _globals_used(constant)
    return names


def _definitions(fn: Callable, shipped: dict[str, str], home: str) -> None:
    """Add to ``shipped`` (name -> code) what ``fn`` needs from its notebook, then ``fn``'s own source."""
    if fn.__closure__:
        raise AssertionError(f"{fn.__name__} uses variables of an enclosing function: define it at the top level "
                             "of a cell")  # fmt: skip
    shipped[fn.__name__] = ""  # a place held against recursion; its source comes last
    for name in sorted(_globals_used(fn.__code__)):
        if name in shipped or name not in fn.__globals__:
            continue  # already there, or a builtin
        value = fn.__globals__[name]
        module = getattr(value, "__module__", None)
        if isinstance(value, types.ModuleType):
            shipped[name] = f"import {value.__name__} as {name}"
        elif isinstance(value, types.FunctionType) and module == home:  # a helper written next to it
            _definitions(value, shipped, home)
        elif module not in (None, "__main__") and hasattr(value, "__qualname__"):  # a library's class or function
            shipped[name] = f"from {module} import {value.__qualname__} as {name}"
        else:
            try:
                literal = repr(value)
                ok = ast.literal_eval(literal) == value
            except (ValueError, SyntaxError, TypeError):
                ok = False
            if not ok:
                raise AssertionError(
                    f"{fn.__name__} uses the notebook's {name} (a {type(value).__name__}), which the worker processes "
                    "cannot get: compute it inside the function or pass it in"
                )
            shipped[name] = f"{name} = {literal}"
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as err:
        raise AssertionError(f"the source of {fn.__name__} cannot be read: define it with def in a cell") from err
    shipped[fn.__name__] = source


def swap_script(yours: Callable) -> str:
    """A script that runs the training job (``python SCRIPT --config job.json``) with ``yours`` in place of
    :func:`recsys_workshop.train.tfconfig.worker_share`."""
    shipped: dict[str, str] = {}
    _definitions(yours, shipped, yours.__module__)
    body = "\n\n".join(code for code in shipped.values() if code)
    return f'''"""Written by recsys_workshop.labchecks.training: the training job with your {yours.__name__}."""

from __future__ import annotations

import sys
from unittest import mock

from recsys_workshop.train import tfconfig
from recsys_workshop.train.job import main
from recsys_workshop.train.tfconfig import WorkerShare

{body}


if __name__ == "__main__":
    with mock.patch.object(tfconfig, "worker_share", {yours.__name__}):
        sys.exit(main())
'''


LOGGED_SHARE = re.compile(r"^this process: (.+)$", re.M)
DIGEST = re.compile(r"^weights_sha256=(\w+)$", re.M)


def worker_share_in_job(yours: Callable, config, workdir: str | Path, *, workers: int = 2,
                        timeout: float = 900.0) -> list[dict[str, str]]:  # fmt: skip
    """Run the training job of ``config`` (one epoch) as ``workers`` local processes with ``yours`` swapped in,
    and check each process's share against the package's for the same ``TF_CONFIG``, and that the processes
    end with identical weights. Prints and returns one row per process."""
    from recsys_workshop.train import tfconfig
    from recsys_workshop.train.launcher import JobFailed, LocalJob

    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    script = workdir / "job_with_your_worker_share.py"
    script.write_text(swap_script(yours), encoding="utf-8")
    one_epoch = dataclasses.replace(config.train, epochs=1)
    config = dataclasses.replace(config, train=one_epoch, checkpoint_dir=None, model_dir=None, metrics_path=None)
    job = LocalJob(config, workers, workdir=workdir, max_restarts=0, entrypoint=[str(script)])
    try:
        result = job.run(timeout=timeout)
    except JobFailed as failure:
        raise AssertionError(f"the training job with your worker_share failed: {failure}") from None
    rows = []
    for name, log in result.logs.items():
        text = log.read_text(encoding="utf-8", errors="replace")
        tf_config = text.splitlines()[0].split("TF_CONFIG=", 1)[1]
        expected = tfconfig.worker_share(tf_config, config.train.batch_size).describe()
        logged, digest = LOGGED_SHARE.search(text), DIGEST.search(text)
        if logged is None or digest is None:
            raise AssertionError(f"{name} did not train (no 'this process:' or weights line); its log: {log}")
        if logged.group(1) != expected:
            raise AssertionError(f"{name}: with its TF_CONFIG your worker_share gave '{logged.group(1)}', the "
                                 f"package's gives '{expected}'")  # fmt: skip
        rows.append({"process": name, "your worker_share": logged.group(1), "weights sha256": digest.group(1)[:16]})
    if len({row["weights sha256"] for row in rows}) != 1:
        raise AssertionError(f"the processes ended with different weights: {rows}")
    if "ndcg_at_10" not in result.metrics:
        raise AssertionError("chief-0 reported no metrics: is_chief comes from your shard (shard 0 is the chief)")
    print(f"The training job with your worker_share: {workers} processes, 1 epoch, {result.seconds:.0f} s")
    for row in rows:
        print(f"  {row['process']:<9} {row['your worker_share']}  (the package's: the same)")
    print(f"  identical weights on every process (sha256 {rows[0]['weights sha256']}...)")
    return rows
