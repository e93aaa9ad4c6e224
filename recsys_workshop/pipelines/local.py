"""Running the pipeline on this machine, with the job config a learner tuned.

:func:`run_local` runs the whole pipeline with ``kfp.local.SubprocessRunner(use_venv=False)``: each task
is a subprocess of this Python, which has kfp installed (the components skip KFP's ``pip install kfp`` at
task start). A failing validation fails its task and stops the run, with the report in the error.
:func:`task_outputs` reads what a task produced (its output parameters, its artifacts' metadata).

The train step runs the same job as ``python -m recsys_workshop.train`` (:func:`recsys_workshop.train.
job.run`) with the pipeline's job config, so the config a learner tunes in lab 08 is the one trained
here (:func:`job_config_with_best` merges the tuner's best parameters into it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def job_config_with_best(base: Mapping[str, Any], best_params_path: str | os.PathLike[str] | None) -> dict:
    """The job config with the best trial's parameters of a tuning run merged in (when the file exists)."""
    from recsys_workshop.train.job import merge_config
    from recsys_workshop.tune import best_overrides

    if best_params_path and Path(best_params_path).exists():
        return merge_config(base, best_overrides(best_params_path))
    return dict(base)


class PipelineFailed(RuntimeError):
    """A local run failed; the message carries the failing validation report when there is one."""


def run_local(
    pipeline_root: str | os.PathLike[str],
    deployed_dir: str | os.PathLike[str],
    *,
    log_path: str | os.PathLike[str] | None = None,
    pipeline: Callable[..., Any] | None = None,
    **arguments,
) -> Path:
    """Run the pipeline (:func:`recsys_workshop.pipelines.pipeline.training_pipeline`) with the KFP local
    runner and return the run's folder under ``pipeline_root`` (one sub-folder per task, holding its
    artifacts). ``deployed_dir``: a folder, or a running model server's URL (the compare and push steps then
    use its admin API with ``$RECSYS_ADMIN_TOKEN``, as on a cluster). A dict ``job_config`` is serialised for
    you. ``log_path``: send the tasks' (long) output
    there instead of stdout. ``feedback_db="sqlite:////abs/path/api.db"`` adds the local API's stored
    feedback to the ratings (see :func:`recsys_workshop.pipelines.steps.step_ingest`). ``pipeline``: another
    ``@dsl.pipeline`` to run the same way (one that takes ``deployed_dir``, e.g. yours from lab 09). Raises
    :class:`PipelineFailed` when a task fails, with the validation report if that was the cause."""
    import contextlib
    import warnings

    from kfp import local

    from recsys_workshop.pipelines.pipeline import training_pipeline

    # the components name the workshop image; run locally, they use this Python instead, on purpose
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    if isinstance(arguments.get("job_config"), Mapping):
        arguments["job_config"] = json.dumps(arguments["job_config"])
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with contextlib.ExitStack() as stack:
        if log_path is not None:
            log = stack.enter_context(open(log_path, "a", encoding="utf-8"))  # noqa: SIM115 - closed by the stack
            stack.enter_context(contextlib.redirect_stdout(log))
        try:
            (pipeline or training_pipeline)(deployed_dir=_deployed(deployed_dir), **arguments)
            failure = None
        except RuntimeError as error:
            failure = error
    runs = sorted(set(root.iterdir()) - before, key=lambda path: path.stat().st_mtime)
    run_dir = runs[-1] if runs else root
    if failure is not None:
        reports = [run_dir / step / "report" for step in ("validate-data", "split-data")]
        failed = [r.read_text(encoding="utf-8") for r in reports if r.is_file() and "FAILED" in r.read_text()]
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(failure))  # KFP colours its messages for a terminal
        raise PipelineFailed("\n".join([plain, *failed])) from None
    return run_dir


def _deployed(deployed_dir: str | os.PathLike[str]) -> str:
    """A folder as an absolute path (the tasks run elsewhere); a model server's URL as it is."""
    from recsys_workshop.pipelines.model_store import is_url

    return str(deployed_dir) if is_url(deployed_dir) else str(Path(deployed_dir).resolve())


def task_outputs(run_dir: str | os.PathLike[str], task: str) -> dict[str, Any]:
    """What task ``task`` (e.g. ``"ingest"``, ``"compare-with-deployed"``) of a local run (the folder
    :func:`run_local` returned) produced: its output parameters by name (a component's return value is
    ``"Output"``) and, by artifact name, each output artifact's metadata. Empty if the task did not run."""
    path = Path(run_dir) / task / "executor_output.json"
    if not path.is_file():
        return {}
    written = json.loads(path.read_text(encoding="utf-8"))
    outputs = dict(written.get("parameterValues", {}))
    for name, entry in written.get("artifacts", {}).items():
        artifacts = entry.get("artifacts", [])
        outputs[name] = dict(artifacts[0].get("metadata", {})) if artifacts else {}
    return outputs
