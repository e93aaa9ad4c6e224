"""The checks behind the labs' self-check cells, one module per group of labs, all reachable as
``labchecks.<name>``: each runs the learner's code on named cases and, when an answer is wrong, says which
case, what was expected and what came back (``AssertionError`` with that message, which
:func:`recsys_workshop.selfcheck.check` turns into the verdict).

- :mod:`.basics`: labs 00, 01, 02 and 05 (numpy and pandas; Keras only inside ``mf_model``);
- :mod:`.negatives`: lab 03 (the uniform negative sampler, numpy and scipy);
- :mod:`.inbatch`: lab 04 (the in-batch softmax's corrections, in ``keras.ops``);
- :mod:`.sequences`: lab 05 (next-film windows for the sequence model);
- :mod:`.manifests`: lab 06 (the model server's Deployment, a broken manifest repaired);
- :mod:`.training`: lab 07 (a worker's share of the global batch under ``TF_CONFIG``);
- :mod:`.tuning`: lab 08 (an Optuna objective and the matching Katib search space);
- :mod:`.pipelines`: lab 09 (a KFP component and its wiring into the pipeline);
- :mod:`.version_policy`: lab 10 (TF Serving's ``models.config``);
- :mod:`.retrieval`: lab 10 (the index settings sweep and the choice against a recall floor);
- :mod:`.operations`: labs 09 to 12 (leakage between splits, feedback as ratings, a rollback, Thompson
  sampling's arm, a Locust task, the SLO check).

The labs import the modules other than :mod:`.basics` by name (``from recsys_workshop.labchecks import
training``): each imports what its lab needs, nothing more.
"""

from recsys_workshop.labchecks.basics import *  # noqa: F403
from recsys_workshop.labchecks.basics import __all__ as _basics

__all__ = [*_basics]
