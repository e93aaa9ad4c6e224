"""Trained models saved with a fingerprint, so a later lab loads what an earlier one trained.

``saved.fit(model, train, config=...)`` trains ``model`` with :func:`recsys_workshop.train.fit` the first
time and saves its weights and learning curves under a *fingerprint*: a hash of everything that decides
the result,

- the data: the training interactions (and the catalogue and validation set when given);
- the model: its class and every constructor setting (DataFrames such as the film metadata by content);
- the training config (``TrainConfig``, all but ``verbose``);
- the code: the package's models, training and data helpers (their source), and the Keras and keras-rs
  versions.

The next call with the same fingerprint (the same lab run again, or a later lab asking for the same
model on the same split) builds the network and loads the weights instead of training; a call whose
fingerprint differs trains again and says which parts differ from the saved models of that name (as
does a saved model that no longer loads; a save that fails costs the save, not the trained model).

A lab that swaps a learner's function into the package (``saved.fit(..., yours={"3.1": sample_negatives})``)
passes it along: the saved model then records a digest of that function's source (``yours.json``, outside the
fingerprint, since the exercise's check has accepted it as equivalent). A saved model made by other code for that
exercise (the solution notebook's, or an earlier draft) is trained again with the learner's function and
replaced, so the learner's code does train the lab's models; a later lab, which passes no ``yours``, loads
whichever was saved last.

Saved models live in ``$RECSYS_SAVED_MODELS`` (``off`` disables saving and loading), by default
``artifacts/saved-models`` in a checkout (git-ignored), else ``~/.cache/recsys-workshop/saved-models``.
Each is a folder ``<name>-<fingerprint>`` holding ``weights.npz``, ``history.csv``, ``fingerprint.json``
(the parts, readable) and ``yours.json`` (the learners' functions that trained it, if any), written to a
temporary folder and renamed, so a half-written model is never loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_workshop import paths
from recsys_workshop.selfcheck import function_digest  # also saved.function_digest

ENV_DIR = "RECSYS_SAVED_MODELS"
FILES = ("weights.npz", "history.csv", "fingerprint.json")


def directory() -> Path | None:
    """Where saved models go, or None when ``$RECSYS_SAVED_MODELS`` is ``off``."""
    configured = os.environ.get(ENV_DIR, "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured).expanduser()
    return paths.ARTIFACTS_DIR / "saved-models" if paths.is_checkout() else paths.cache_dir() / "saved-models"


def _digest(*chunks: bytes) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()[:16]


def _frame_digest(frame: pd.DataFrame | pd.Series) -> str:
    """Content hash of a DataFrame or Series: values, index and column names (list cells by their repr)."""
    frame = frame.to_frame() if isinstance(frame, pd.Series) else frame
    readable = frame.copy()
    for column in readable.select_dtypes(include="object").columns:
        readable[column] = readable[column].map(repr)
    hashed = pd.util.hash_pandas_object(readable, index=True).to_numpy()
    return _digest(repr(list(frame.columns)).encode(), repr(list(frame.dtypes.astype(str))).encode(), hashed.tobytes())


def canonical(value):
    """``value`` as JSON-ready data for the fingerprint; TypeError for what cannot be fingerprinted."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, pd.DataFrame | pd.Series):
        return {"frame": _frame_digest(value), "rows": len(value)}
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        content = repr(array.tolist()).encode() if array.dtype == object else array.tobytes()  # not pointers
        return {"array": _digest(content, str(array.dtype).encode()), "shape": list(array.shape)}
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def settings(model) -> dict:
    """The model's constructor settings: its public attributes that are not fitted state (no ``_`` at either
    end), class attributes overridden per instance included."""
    return {k: v for k, v in vars(model).items() if not k.startswith("_") and not k.endswith("_")}


CODE = ("models", "train", "data.py")  # what decides a trained network, under recsys_workshop/


def _code_digest(model) -> str:
    """Hash of the package code a trained network depends on: every model (a model builds on sampling, text
    encoders and shared bases), training (the loop, the optimisers) and the data helpers, plus the model's own
    module if it lives elsewhere."""
    import recsys_workshop

    root = Path(recsys_workshop.__file__).parent
    files = sorted(f for part in map(root.joinpath, CODE) for f in (part.rglob("*.py") if part.is_dir() else [part]))
    own = {inspect.getsourcefile(cls) for cls in type(model).__mro__ if cls.__module__.startswith("recsys_workshop.")}
    files += sorted(Path(f) for f in own if f and Path(f) not in files)
    return _digest(*(f"{f.relative_to(root)}\n".encode() + f.read_bytes() for f in files))


def fingerprint(model, interactions: pd.DataFrame, config, *, items=None, validation=None) -> dict:
    """The parts that decide a trained model (see the module docstring), each JSON-ready, and their hash."""
    import keras

    parts = {
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "settings": canonical(settings(model)),
        "config": canonical({k: v for k, v in dataclasses.asdict(config).items() if k != "verbose"}),
        "data": canonical(interactions),
        "items": canonical(None if items is None else np.sort(np.asarray(list(items), dtype=np.int64))),
        "validation": canonical(validation),
        "code": _code_digest(model),
        "keras": keras.__version__,
        "keras-rs": _version("keras-rs"),
    }
    return {"hash": _digest(json.dumps(parts, sort_keys=True).encode()), "parts": parts}


def learners_code(yours: dict[str, Callable] | None) -> dict[str, str]:
    """``{exercise: source digest}`` of the learner's functions among ``yours``; the package's own functions
    (which stand in until an exercise's check has passed) are in the code digest already."""
    return {
        exercise: function_digest(function)
        for exercise, function in sorted((yours or {}).items())
        if not getattr(function, "__module__", "").startswith("recsys_workshop")
    }


def _trained_by(folder: Path) -> dict[str, str]:
    path = folder / "yours.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def differences(saved: dict, wanted: dict) -> list[str]:
    """Which parts of two fingerprints differ, finest first: ``config.batch_size (256 -> 1024)``, ``data``."""
    out = []
    for part in wanted:
        old, new = saved.get(part), wanted[part]
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and part in ("settings", "config"):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    out.append(f"{part}.{key} ({_short(old.get(key))} -> {_short(new.get(key))})")
        else:
            out.append(part)
    return out


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def _why_training(store: Path, name: str, wanted: dict) -> str:
    """One sentence: why this model is trained rather than loaded."""
    own = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}")  # not triplet-bpr-popularity-... for triplet-bpr
    others = sorted(p for p in store.iterdir() if own.fullmatch(p.name) and _complete(p)) if store.is_dir() else []
    if not others:
        return f"no saved {name} yet"
    closest = min(
        (differences(json.loads((p / "fingerprint.json").read_text())["parts"], wanted["parts"]) for p in others),
        key=len,
    )
    return f"the saved {name} differs in {', '.join(closest)}"


def _save(model, folder: Path, print_fn, *, yours: dict[str, str] | None = None) -> None:
    """Weights, learning curves, fingerprint and the learners' code into ``folder``, atomically (temporary folder,
    then rename). ``fit`` saves only what it trained because the folder there would not do (missing, broken, not
    loadable, or trained by other code for the learner's exercises): that one is set aside, replaced, then removed,
    and put back if the new one cannot take its place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    aside = None
    try:
        weights = model.network_.get_weights()
        np.savez(staging / "weights.npz", **{f"w{i:04d}": w for i, w in enumerate(weights)})
        model.history_.to_csv(staging / "history.csv")
        (staging / "fingerprint.json").write_text(json.dumps(model.fingerprint_, indent=1, sort_keys=True) + "\n")
        (staging / "yours.json").write_text(json.dumps(yours or {}, indent=1, sort_keys=True) + "\n")
        if folder.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            folder.rename(aside / "model")
        try:
            staging.rename(folder)
        except OSError:
            if not _complete(folder):  # (complete: another process saved the same model meanwhile, as good)
                if aside is not None and not folder.exists():
                    (aside / "model").rename(folder)  # the earlier one stays where it was
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    print_fn(f"{model.name}: saved to {folder}")


def _load(model, folder: Path, interactions, *, config, items, validation) -> None:
    weights = np.load(folder / "weights.npz")
    history = pd.read_csv(folder / "history.csv", index_col="epoch")
    from recsys_workshop import train as training

    with training.restoring([weights[k] for k in sorted(weights.files)], history):
        model.fit(interactions, items=items, config=config, validation=validation)


def fit(model, interactions: pd.DataFrame, *, config, items=None, validation=None, yours=None, print_fn=print):
    """Load ``model`` trained on ``interactions`` with ``config`` if it was saved before, else train it (through
    ``model.fit``) and save it. Prints which of the two happened and why. Returns the fitted model.

    ``yours``: ``{exercise: function}``, the learner's functions this training runs with (see the module
    docstring); a saved model trained by other code for them is trained again."""
    store = directory()
    learners = learners_code(yours)
    try:
        wanted = fingerprint(model, interactions, config, items=items, validation=validation)
    except TypeError as err:
        print_fn(f"{model.name}: training (not saved: {err})")
        store = None
    if store is None:
        return model.fit(interactions, items=items, config=config, validation=validation)
    folder = store / f"{model.name}-{wanted['hash']}"
    why = None
    other = sorted(e for e in learners if _trained_by(folder).get(e) != learners[e]) if _complete(folder) else []
    if other:
        why = (f"the saved {model.name} was trained by other code for Exercise {', '.join(other)}: "
               "this run trains it with yours")  # fmt: skip
    elif _complete(folder):
        try:
            _load(model, folder, interactions, config=config, items=items, validation=validation)
        except (ValueError, OSError, KeyError) as err:  # unreadable, or weights that no longer fit the network
            why = f"the saved {model.name} could not be loaded: {type(err).__name__}: {str(err)[:120]}"
        else:
            model.fingerprint_ = wanted
            same = "same data, split, settings, config and code" + (
                f", and trained with your code for Exercise {', '.join(learners)}" if learners else "")
            print_fn(f"{model.name}: loaded from {folder} ({same})")
            return model
    print_fn(f"{model.name}: training ({why or _why_training(store, model.name, wanted)})")
    model.fit(interactions, items=items, config=config, validation=validation)
    model.fingerprint_ = wanted
    try:
        _save(model, folder, print_fn, yours=learners)
    except OSError as err:  # a full or read-only disk costs the save, not the trained model
        print_fn(f"{model.name}: not saved ({err})")
    return model
