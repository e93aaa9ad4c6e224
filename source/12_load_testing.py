# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 12: load testing the recommender with Locust
#
# **Time:** about 50 minutes.
#
# > **Before you start**
# > - **You need:** lab 11 (the stack under load).
# > - **A cluster:** no. Locust and the stack run on this machine.
# > - **Run All** (2 CPU cores): under a minute at CI size, about 4 min at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - see why a service that answers one request well can still fail its users, and write its promise
#   down as a *service-level objective* (SLO): "95% of the answers within 100 ms, fewer than 0.1% errors";
# - read simulated users written in Python (Locust): what they ask for, how often, and who they are
#   (user ids drawn with MovieLens' real long tail of activity), and add a task of your own;
# - run a bounded, headless load test against the local stack (model server + API), read its charts,
#   and write the SLO check that decides pass or fail;
# - step the load up until the service breaks its SLO: the *knee*, the capacity you can promise;
# - find what limits throughput here (CPU, Python, JSON, the hop between the API and the model server)
#   and measure one optimisation before and after.
#
# Locust always runs as its own process, started by `recsys_workshop.loadtest`: never `import locust`
# in this notebook (its gevent monkey-patching breaks a process that already loaded other network
# libraries). Everything runs on 127.0.0.1, with a bounded number of users and a bounded duration.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-100k"
N_FACTORS = {"full": 32, "ci": 8}[WORKSHOP_SCALE]
EPOCHS = {"full": 5, "ci": 1}[WORKSHOP_SCALE]
USERS = {"full": 20, "ci": 4}[WORKSHOP_SCALE]  # simulated users of the first run
RUN_SECONDS = {"full": 30, "ci": 3}[WORKSHOP_SCALE]  # length of each fixed-load run
STEP_USERS = {"full": 4, "ci": 2}[WORKSHOP_SCALE]  # users added at each step of the step load
MAX_USERS = {"full": 32, "ci": 4}[WORKSHOP_SCALE]
STEP_SECONDS = {"full": 12, "ci": 2}[WORKSHOP_SCALE]
BATCH_SIZE = 16  # users per model-server request in the optimisation of section 6
SLO_P95_MS = 100  # the objective: p95 latency below this many milliseconds ...
SLO_MAX_ERROR_RATE = 0.001  # ... and fewer than 0.1% failed requests
WORK_DIR = "artifacts/12_load_testing"  # models and Locust files (emptied at the start)

# %%
import contextlib
import inspect
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import requests
from IPython.display import Image, display

from recsys_workshop import data, export, loadtest, selfcheck
from recsys_workshop.api import local_stack
from recsys_workshop.models.mf import MatrixFactorization
from recsys_workshop.train import TrainConfig

work = Path(WORK_DIR)
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
ratings = data.load_ratings(DATASET)
config = TrainConfig(epochs=EPOCHS, batch_size=2048, learning_rate=1e-2, patience=0, validation_fraction=0.0,
                     seed=0, verbose=0)
model = MatrixFactorization(N_FACTORS, seed=0).fit(ratings, config=config)
model_dir = work / "models"
export.export_model(model, model_dir, metadata={"dataset": DATASET})

# The API keeps its state (users, feedback, bandit) in a database: a fresh SQLite file for this lab. Locust
# runs as ONE client from this machine, so the API's per-client write limits (a few dozen feedback posts a
# minute, enough for a person, not for a load generator) are switched off for the test.
API_ENV = {"RECSYS_DATABASE_URL": f"sqlite:///{(work / 'api.db').resolve()}",
           "RECSYS_FEEDBACK_RATE": "off", "RECSYS_USERS_RATE": "off"}
stacks = contextlib.ExitStack()  # closed in the last cell: stops both servers
stack = stacks.enter_context(local_stack(model_dir, env=API_ENV))
pids = {"API": stack.api.process.pid, "model server": stack.model_server.process.pid}
print(f"model server {stack.model_url}, API {stack.api_url}")
print(requests.get(f"{stack.api_url}/recommendations/196?k=3", timeout=10).json()["items"][0]["title"])

# %% [markdown]
# The stack of lab 11 runs again here: a matrix factorisation exported as version 1, the KServe model
# server in front of it, and the API (business logic, fallback, UI) in front of the model server, each
# its own process on a free loopback port.
#
# ## 1. Why load test?
#
# One request answered in 20 ms says little about a hundred users at once. Under load, requests queue
# behind each other (one Python process runs one thing at a time per core), latency grows long before
# anything *fails*, connection pools run dry, timeouts fire, the fallback kicks in, and the slowest 1%
# of answers, the ones users remember, gets much slower than the median. A load test finds out before
# the users do, and answers the questions that size a deployment: how many requests per second can one
# replica take *while still keeping its promise*? How many replicas for the expected peak?
#
# The promise is the **SLO**. We judge the **p95** (the latency 95% of the requests beat) rather than the
# mean, which hides the slow tail, and the **error rate**. The load comes from a **model of the users**,
# written in code so that it is reviewed, versioned and repeatable.
#
# ## 2. Users in code
#
# The workshop's Locust file is `recsys_workshop/loadtest/locustfile.py` (the same file the cluster's Locust
# master and workers run, lab 06). Each simulated user loops: pick a task at random by weight, run it,
# think for a while (`RECSYS_LOCUST_WAIT`, 0.5-2 s by default), repeat. The tasks:

# %%
locustfile_source = Path(loadtest.LOCUSTFILE).read_text()
start = locustfile_source.index("def open_home")
end = locustfile_source.index("TASKS = ")
print(locustfile_source[start:end])

# %% [markdown]
# `RECSYS_LOCUST_WEIGHTS` sets how often each task is picked (`home=1,recommend=10,new_user=1` by
# default), and `user.pick_user()` draws a MovieLens user id **in proportion to that user's number of
# ratings**: real traffic is not uniform, a few heavy users come back all the time. It matters for a
# recommender: heavy users have long histories, so longer "already seen" lists to exclude, and a cache
# keyed by user would see many hits. The long tail the simulated users follow:

# %%
activity = ratings["user_id"].value_counts()  # ratings per user, most active first
share = activity.cumsum() / activity.sum()
top_tenth = share.iloc[len(activity) // 10 - 1]
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(np.arange(1, len(activity) + 1) / len(activity) * 100, share.to_numpy() * 100)
ax.set(xlabel="% of users, most active first", ylabel="% of requests", title="Who sends the requests")
plt.show()
print(f"the 10% most active users send {top_tenth:.0%} of the requests; uniform ids would give them 10%")

# %% [markdown]
# ### Exercise 12.1: a new task for the simulated users
#
# Some users dislike what they are shown. Write the task `dislike_top(user)`: ask for 5 recommendations
# for a user drawn by `user.pick_user()` with `user.get_recommendations(user_id, 5)` (it returns the list
# of item ids, `[]` if the answer was bad, and keeps the answer's `recommendation_id` in
# `user.recommendation_id`), then, if the list is not empty, tell the API that this user dislikes the
# first one: `POST /feedback` with the JSON body `{"user_id": ..., "item_id": ..., "action": "dislike",
# "recommendation_id": ...}`, through `user.client.post(path, json=body, name="/feedback [dislike]")`
# (the `name` groups these requests in Locust's statistics). The API accepts feedback only with the
# signed id of a recommendation it really made (lab 11), so a load test has to play by the same rules.
#
# A task is a plain function of the user: `loadtest.locustfile_with_tasks` copies it into a new
# Locust file whose users do everything the workshop's users do, plus your task.

# %%
def dislike_top(user):
    """Ask for 5 recommendations, then dislike the first one."""
    ### BEGIN SOLUTION
    user_id = user.pick_user()
    items = user.get_recommendations(user_id, 5)
    if items:
        body = {"user_id": user_id, "item_id": items[0], "action": "dislike",
                "recommendation_id": user.recommendation_id}
        user.client.post("/feedback", json=body, name="/feedback [dislike]")
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop.labchecks import operations


def _test():
    operations.dislike_top(dislike_top)  # a simulated user, no network
    # now for real, in Locust, against the API
    lab_file = loadtest.locustfile_with_tasks(work / "lab_locustfile.py", {dislike_top: 5})
    run = loadtest.run(stack.api_url, prefix=work / "exercise", users=2, run_time=min(RUN_SECONDS, 5),
                       locustfile=lab_file, env={"RECSYS_LOCUST_WAIT": "0"})
    stats = loadtest.read_stats(run).set_index("Name")
    assert "/feedback [dislike]" in stats.index, "no request named '/feedback [dislike]' was sent"
    sent, failed = stats.loc["/feedback [dislike]", ["Request Count", "Failure Count"]]
    assert sent > 0 and failed == 0, f"{failed} of {sent} dislikes failed (see {run.prefix}_failures.csv)"
    events = requests.get(f"{stack.api_url}/feedback?limit=1000", headers=stack.admin_headers(),  # an admin call
                          timeout=10).json()["events"]
    assert any(e["action"] == "dislike" for e in events), "the API recorded no dislike"


selfcheck.check(
    "12.1", _test,
    hint="A task plays one visit: draw a user once and keep that id, since the feedback must be about the same "
         "user the recommendations were for. The API accepts it only with the signed id of that recommendation, "
         "which get_recommendations leaves on the user object, so read it after the call. An empty list (a failed "
         "answer) means there is nothing to dislike.",
    code_hint="user_id = user.pick_user(); items = user.get_recommendations(user_id, 5)\n"
              "if items:\n"
              "    body = {'user_id': user_id, 'item_id': items[0], 'action': 'dislike', "
              "'recommendation_id': user.recommendation_id}\n"
              "    user.client.post('/feedback', json=body, name='/feedback [dislike]')",
)

# %% [markdown]
# ## 3. A first headless run
#
# `loadtest.run` starts Locust headless (no web UI) for a bounded time, writes its CSV files under a
# prefix, and refuses any host that is not a loopback address. The same from a terminal, with the SLO
# verdict as the exit status (0 met, 1 missed), which is what a CI job or a deployment gate needs:
#
# ```sh
# python -m recsys_workshop.loadtest run --host http://127.0.0.1:8000 --users 20 --run-time 30s \
#     --out artifacts/loadtest/first --p95-ms 100 --max-error-rate 0.001 [--workers 2]
# ```
#
# `--workers 2` runs one Locust master and two worker processes, as the cluster does with its
# `recsys-locust-master` and `recsys-locust-worker` Deployments: one Python process of Locust drives
# about one core, so a big test needs several.

# %%
first = loadtest.run(stack.api_url, prefix=work / "first", users=USERS, run_time=RUN_SECONDS)
stats = loadtest.read_stats(first)
stats[["Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%", "Max Response Time"]]

# %% [markdown]
# ## 4. Reading the charts, and the SLO check
#
# `loadtest.plot_run` draws four panels from the CSV files: throughput (with the number of users),
# latency percentiles over a sliding 10-second window, failures, and the histogram of every response
# time of the run.

# %%
display(Image(filename=str(loadtest.plot_run(first, slo=loadtest.SLO(SLO_P95_MS, SLO_MAX_ERROR_RATE)))))

# %% [markdown]
# How to read them:
# - **Throughput** follows the users while the service keeps up; when it stops rising with more users,
#   the service is saturated and extra users only wait in queues.
# - **Latency**: the median (p50) is the typical answer; p95 and p99 are the tail. A tail that climbs
#   while the median stays flat means queueing or pauses (garbage collection, a slow dependency).
#   Locust's users, with or without think times, are a **closed** load: a user sends its next request
#   only after the answer and its think time, so N users with think time Z and response time R send
#   `X = N / (Z + R)` requests per second (the interactive response-time law). When the service slows
#   down, the users slow down with it and the load eases off by itself. An **open** load is a stream of
#   requests arriving at a rate λ whatever the service does (many independent visitors are closer to
#   that): once λ passes the capacity, queues and latency grow without bound instead of throughput
#   levelling off. Locust's `constant_throughput(x)` wait time paces each user at x requests per second,
#   which approximates an open load of `N * x` per second only while `R` stays below `1/x`.
# - **Failures**: any non-2xx answer, a timeout or a wrong body (the locustfile checks the body).
# - **Histogram**: a long right tail, or two humps (e.g. the cheap home page and the costlier
#   recommendations, or answers from the model vs. from the fallback).
#
# ### Exercise 12.2: the SLO check
#
# Write `meets_slo(stats, p95_ms, max_error_rate)`: from a Locust statistics table (the `stats`
# DataFrame above, one row per request name plus the `"Aggregated"` row), return `(passed, reasons)`.
# Use the `"Aggregated"` row: its `"95%"` column (ms), `"Request Count"` and `"Failure Count"`. The SLO is
# met when p95 < `p95_ms` and failures / requests < `max_error_rate`, with at least one request.
# `reasons` lists one short string per broken condition (empty when `passed`).

# %%
def meets_slo(stats, p95_ms, max_error_rate):
    """(passed, reasons) for the "Aggregated" row of a Locust statistics table."""
    ### BEGIN SOLUTION
    total = stats[stats["Name"] == "Aggregated"].iloc[0]
    requests_, failures = int(total["Request Count"]), int(total["Failure Count"])
    if requests_ == 0:
        return False, ["no requests"]
    reasons = []
    if not total["95%"] < p95_ms:
        reasons.append(f"p95 {total['95%']} ms >= {p95_ms} ms")
    if not failures / requests_ < max_error_rate:
        reasons.append(f"error rate {failures / requests_:.2%} >= {max_error_rate:.2%}")
    return not reasons, reasons
    ### END SOLUTION


# %%
# Self-check
def _test():
    operations.meets_slo(meets_slo)  # named cases against loadtest.verdict
    for p95_ms in (1, 1e6):  # the real run, both ways
        expected, got = loadtest.verdict(first, loadtest.SLO(p95_ms, 0.5)).passed, meets_slo(stats, p95_ms, 0.5)
        assert got[0] == expected, f"the run above, p95 < {p95_ms:g} ms: expected passed={expected}, got {got}"


selfcheck.check(
    "12.2", _test,
    hint="Read one row, 'Aggregated' (the whole run), not the first one. Both conditions are strict: a p95 equal "
         "to the threshold misses, and so does an error rate equal to the maximum. A run with no requests proves "
         "nothing (and has no error rate to divide). Each broken condition gives its own reason.",
    code_hint="total = stats[stats['Name'] == 'Aggregated'].iloc[0]\n"
              "requests_, failures = int(total['Request Count']), int(total['Failure Count'])\n"
              "if requests_ == 0: return False, ['no requests']\n"
              "reasons = []\n"
              "if not total['95%'] < p95_ms: reasons.append(f\"p95 {total['95%']} ms >= {p95_ms} ms\")\n"
              "if not failures / requests_ < max_error_rate: reasons.append('error rate too high')\n"
              "return not reasons, reasons",
)

# %% [markdown]
# The package's version is `loadtest.verdict(run, loadtest.SLO(p95_ms, max_error_rate))`:

# %%
verdict = loadtest.verdict(first, loadtest.SLO(SLO_P95_MS, SLO_MAX_ERROR_RATE))
print(verdict)

# %% [markdown]
# ## 5. Finding the knee
#
# A fixed load tells whether one load level is fine. Capacity needs a sweep: the **step load**
# (`recsys_workshop/loadtest/stepload.py`, a Locust `LoadTestShape`) adds `STEP_USERS` users every `STEP_SECONDS`
# seconds up to `MAX_USERS`, and records each step's requests, failures and percentiles (without its
# first moments, while the new users arrive). The users here think for 0 s: a *closed loop* where each
# user sends its next request as soon as it has the answer, so the number of users is the number of
# requests in flight, and by Little's law **users = throughput x latency**. While the service has
# spare capacity, throughput grows with users at flat latency; at saturation throughput stays flat and
# latency grows in proportion to users. The **knee** is the highest user count whose step (and every
# lighter one) still meets the SLO: the load you can promise.

# %%
steps_run = loadtest.run_steps(stack.api_url, prefix=work / "steps", step_users=STEP_USERS, max_users=MAX_USERS,
                               step_seconds=STEP_SECONDS, env={"RECSYS_LOCUST_WAIT": "0"})
slo = loadtest.SLO(SLO_P95_MS, SLO_MAX_ERROR_RATE)
steps = loadtest.step_verdicts(loadtest.read_steps(steps_run), slo)
steps["users / (rps x p50)"] = steps["users"] / (steps["rps"] * steps["p50_ms"] / 1000)  # Little's law, ~1
display(steps)
knee = loadtest.find_knee(steps, slo)
print(knee)
display(Image(filename=str(loadtest.plot_knee(steps_run, slo))))

# %% [markdown]
# The last column checks Little's law with the median latency: close to 1 (the mean latency would
# give exactly 1). At the CI size the sweep is tiny (a few users for a few seconds each); at full size
# you can watch the throughput flatten. From the terminal:
# `python -m recsys_workshop.loadtest steps --host ... --step-users 4 --max-users 32 --step-seconds 12`.
#
# ## 6. What limits throughput here, and one optimisation
#
# On this machine everything shares a few cores: Locust itself, the API and the model server. Where
# does the CPU go? Measure the CPU time each server process spends per request (psutil), for the API
# end to end and for the model server alone, with the same closed-loop load.

# %%
bench_task_file = work / "predict_locustfile.py"


def predict_top10(user):
    """One POST to the model server: top-10 for BATCH users (a model-server user, not an API user)."""
    batch = int(os.environ.get("BATCH", "1"))
    body = {"instances": [{"user_id": user.pick_user(), "k": 10} for _ in range(batch)]}
    user.client.post("/v1/models/recsys:predict", json=body, name=f"predict x{batch}")


loadtest.locustfile_with_tasks(bench_task_file, {predict_top10: 1}, keep_defaults=False)


def measure(url, name, *, locustfile=None, env=None, per_request=1):
    """A closed-loop run of RUN_SECONDS against url: throughput, latency and CPU ms per request."""
    before = loadtest.cpu_seconds(list(pids.values()))
    run = loadtest.run(url, prefix=work / name, users=USERS, run_time=RUN_SECONDS, locustfile=locustfile,
                       env={"RECSYS_LOCUST_WAIT": "0", "RECSYS_LOCUST_WEIGHTS": "home=0,new_user=0",
                            "RECSYS_LOCUST_FEEDBACK_PROB": "0", **(env or {})})
    after = loadtest.cpu_seconds(list(pids.values()))
    v = loadtest.verdict(run, slo)
    row = {"run": name, "requests/s": round(v.rps, 1), "users served/s": round(v.rps * per_request, 1),
           "p50 ms": v.p50_ms, "p99 ms": v.p99_ms, "failures": v.failures}
    served = max(v.requests * per_request, 1)
    for label, pid in pids.items():
        row[f"{label} CPU ms/user served"] = round(1000 * (after[pid] - before[pid]) / served, 2)
    return row


rows = [
    measure(stack.api_url, "api"),
    measure(stack.model_url, "model server", locustfile=bench_task_file, env={"BATCH": "1"}),
]
display(pd.DataFrame(rows).set_index("run"))
api_cpu, behind_cpu = rows[0]["API CPU ms/user served"], rows[0]["model server CPU ms/user served"]
alone_cpu = rows[1]["model server CPU ms/user served"]
print(f"one API request: {api_cpu:.2f} ms of API CPU + {behind_cpu:.2f} ms of model-server CPU; "
      f"a plain top-10 request straight to the model server: {alone_cpu:.2f} ms")

# %% [markdown]
# Read the table. The model server does the maths (one matrix product and a partial sort), yet most
# of the CPU of an API request is spent around it: the API parses the request, calls the model server
# (encodes JSON, an HTTP round trip through a connection pool, decodes JSON), re-ranks for diversity,
# looks up titles and genres, writes a log line and metrics, and encodes a larger JSON answer. The model
# server itself works harder for an API request than for a plain top-10: the API asks for more
# candidates than it shows and sends the user's already-seen films to exclude, a long list for the
# heavy users our simulated users favour. The limits, in the order they bite here:
#
# - **CPU**: a handful of cores shared by Locust and two servers; when the sum is at 100%, nothing
#   else helps. Locust's own share is why the cluster runs it on separate pods.
# - **Python**: each server is one process, so at most about one core each (the GIL); a second API
#   worker process (`uvicorn --workers 2`) or a second replica is the first scaling step.
# - **JSON**: every hop encodes and decodes; the model server's answer for `k` candidates is parsed and
#   re-encoded; `orjson` is several times faster than the standard library.
# - **The hop**: each API request is a second HTTP request; its client (connection pool, async
#   machinery) costs about as much CPU as the work itself.
#
# **One optimisation, measured**: send the model server *batches*. Its top-k is one matrix product for
# all the users of a request, so the per-request costs (HTTP, JSON framing, Python dispatch) are paid
# once for `BATCH_SIZE` users. An API that gathers the requests arriving within a millisecond or two
# into one call (*micro-batching*, what TensorFlow Serving's batching does) would get the same gain.

# %%
rows.append(measure(stack.model_url, f"model server, batches of {BATCH_SIZE}", locustfile=bench_task_file,
                    env={"BATCH": str(BATCH_SIZE)}, per_request=BATCH_SIZE))
comparison = pd.DataFrame(rows).set_index("run")
display(comparison)
gain = comparison["users served/s"].iloc[2] / comparison["users served/s"].iloc[1]
print(f"batching {BATCH_SIZE} users per request serves {gain:.1f}x more users per second")

# %% [markdown]
# The CPU per user served drops, and the users served per second rise, by a large factor: most of a
# single-user request's cost was the request, not the model. Latency per request rises a little (each
# answer carries `BATCH_SIZE` lists), which is the trade-off every batching scheme tunes. The serving
# benchmark (`bench/serving.py`, results in `bench/results/serving.json`) compares, under the same load
# for 60 s each, a plain FastAPI app calling the SavedModel per request, this model server, and the API
# end to end.
#
# ## Wrap-up
#
# - Users are code: weights, think times, the long tail of who asks, and checks on every answer.
# - A load test is bounded, repeatable and judged: an SLO with a pass/fail exit status.
# - The knee, not the peak throughput, is the capacity to plan with; past it, latency pays for load.
# - Measure where the CPU goes before optimising; here the per-request overheads (HTTP, JSON, Python)
#   dwarf the model's arithmetic, so batching pays.
#
# On a cluster, `cluster-setup/manifests/base/loadgen.yaml` runs the same locustfile as one master and
# N workers (`kubectl port-forward svc/recsys-locust-master 8089` opens its web UI). Stop the servers:

# %%
stacks.close()
print("stopped:", stack.api.process.poll() is not None and stack.model_server.process.poll() is not None)
