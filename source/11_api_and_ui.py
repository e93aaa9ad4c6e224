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
# # Lab 11: the API layer and the UI
#
# **Time:** about 40 minutes.
#
# > **Before you start**
# > - **You need:** lab 10 (the model server the API calls).
# > - **A cluster:** no. The model server and the API run on this machine; the same code is the cluster's
# >   Deployment.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - see why a model's raw top-k is not what a user should see, and write the business logic that sits
#   between the model server and the screen: the **seen-item filter**, **diversity re-ranking** by maximal
#   marginal relevance (MMR), and the **bandit** that picks which model version answers;
# - start the local stack (model server + API, two processes on loopback ports) and query it like a
#   client would: recommendations with titles, genres and a "because you liked ..." reason, feedback,
#   new users, Prometheus metrics;
# - stop the model server and watch the API keep answering from its fallback, saying so;
# - open the web UI that the API serves.
#
# The API is the same code that runs on the cluster (`uvicorn recsys_workshop.api:app`, a Deployment in
# front of the InferenceService of lab 10). Its logic lives, tested, in `recsys_workshop.api.logic`: here you
# write each step yourself, and the self-checks compare your version with the package's.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-100k"
K = 10
SEED = 42
N_FACTORS = {"full": 32, "ci": 8}[WORKSHOP_SCALE]
EPOCHS = {"full": (3, 10), "ci": (1, 2)}[WORKSHOP_SCALE]  # training epochs of model versions 1 and 2
BATCH_SIZE = {"full": 1024, "ci": 8192}[WORKSHOP_SCALE]
MODEL_DIR = "artifacts/lab11/models"  # exported versions: MODEL_DIR/1, MODEL_DIR/2
MMR_LAMBDA = 0.7  # 1 = the model's order, lower = more variety
N_SIMULATED_VISITS = {"full": 5000, "ci": 1000}[WORKSHOP_SCALE]

# %%
import contextlib
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from recsys_workshop import data, selfcheck
from recsys_workshop.api import logic

movielens = data.load(DATASET)
ratings, items = movielens.ratings, movielens.items
catalogue = logic.Catalogue.build(items, ratings, movielens.users)
histories = logic.Histories.build(ratings)
title = dict(zip(items["item_id"], items["title"], strict=True))

# %% [markdown]
# `Catalogue` and `Histories` are what the API computes **once**, at start-up: titles, genres (as unit
# vectors, so a dot product is a cosine), popularity, and each user's seen and liked films, all as numpy
# arrays and dicts. A request must never touch a DataFrame: at 500 requests a second, a 2 ms `groupby`
# is the whole CPU budget.
#
# ## 1. A model's raw top-k
#
# We train two small matrix-factorisation models (lab 02) and export them as versions 1 and 2 (lab 10):
# the model server will serve them, the API will choose between them.

# %%
from recsys_workshop.export import export_model
from recsys_workshop.models.mf import MatrixFactorization
from recsys_workshop.train import TrainConfig

shutil.rmtree(MODEL_DIR, ignore_errors=True)
for version, epochs in enumerate(EPOCHS, start=1):
    config = TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, learning_rate=1e-2, patience=0,
                         validation_fraction=0.0, seed=SEED + version, verbose=0)
    model = MatrixFactorization(N_FACTORS, l2=1e-4, seed=SEED + version).fit(ratings, config=config)
    path = export_model(model, MODEL_DIR, version=version, metadata={"dataset": DATASET, "train_config": {"epochs": epochs}})
    print(f"version {version}: {epochs} epoch(s) -> {path}")

# %% [markdown]
# Ask the last model for the top 10 of user 276 (a heavy user: 518 ratings) *without* excluding
# anything: a rating model happily recommends films the user has already rated (and rated highly: that
# is what it learned).

# %%
USER = 276  # a heavy user: 518 ratings
raw_ids = model.recommend([USER], 10 * K, exclude_seen=False)
raw = raw_ids[raw_ids["user_id"] == USER].sort_values("rank")
raw_items, raw_scores = raw["item_id"].tolist(), raw["score"].tolist()
seen = histories.seen[USER]
print(f"user {USER} rated {len(seen)} films; {sum(i in seen for i in raw_items[:K])} of the raw top {K} are among them")

# %% [markdown]
# ### Exercise 11.1: the seen-item filter
#
# Write `filter_seen(item_ids, scores, seen, k)`: walk the ranked list (best first), skip the items in
# `seen` and any item already kept (a duplicate), and stop once `k` items are kept. Return two lists,
# the kept item ids and their scores, in the original order. Do not change the arguments. `seen` may be
# any iterable (a set, a list, a frozenset): turn it into a `set` once, for O(1) membership tests.

# %%
def filter_seen(item_ids, scores, seen, k):
    ### BEGIN SOLUTION
    skip = set(seen)
    kept_ids, kept_scores = [], []
    for item, score in zip(item_ids, scores):
        if len(kept_ids) >= k:
            break
        if item in skip:
            continue
        skip.add(item)
        kept_ids.append(int(item))
        kept_scores.append(float(score))
    return kept_ids, kept_scores
    ### END SOLUTION


# %%
# Self-check
def _check_filter():
    selfcheck.equal(filter_seen([5, 3, 9, 1, 7], [0.9, 0.8, 0.7, 0.6, 0.5], {3, 1}, 2), ([5, 9], [0.9, 0.7]),
                    "filter_seen([5, 3, 9, 1, 7], ..., seen={3, 1}, k=2)")
    selfcheck.equal(filter_seen([4, 4, 2], [3.0, 1.0, 2.0], [], 5), ([4, 2], [3.0, 2.0]), "a duplicate is kept once")
    selfcheck.equal(filter_seen([1, 2], [1.0, 0.5], [1, 2], 5), ([], []), "everything seen")
    ids = [5, 3, 9]
    filter_seen(ids, [1.0, 0.5, 0.2], {3}, 1)
    selfcheck.equal(ids, [5, 3, 9], "the argument item_ids after the call (do not change it)")
    rng = np.random.default_rng(0)
    for _ in range(50):
        candidates = [int(i) for i in rng.integers(1, 40, size=rng.integers(0, 30))]
        scores = list(np.sort(rng.random(len(candidates)))[::-1])
        seen = set(rng.integers(1, 40, size=10).tolist())
        k = int(rng.integers(0, 12))
        selfcheck.equal(filter_seen(candidates, scores, seen, k), logic.filter_seen(candidates, scores, seen, k),
                        f"filter_seen({candidates}, ..., seen={sorted(seen)}, k={k})")
    selfcheck.equal(filter_seen(raw_items, raw_scores, histories.seen[USER], K),
                    logic.filter_seen(raw_items, raw_scores, histories.seen[USER], K), f"user {USER}'s list")


selfcheck.check(
    "11.1", _check_filter,
    hint="One pass over the ranked list, best first: an item is skipped when the user has seen it or when it is "
         "already kept, and the walk stops at k. One set can answer both questions if every kept item joins it; "
         "build it from seen (a copy: the caller's seen must not change).",
    code_hint="skip = set(seen); kept_ids, kept_scores = [], []\n"
              "for item, score in zip(item_ids, scores):\n"
              "    if len(kept_ids) >= k: break\n"
              "    if item in skip: continue\n"
              "    skip.add(item); kept_ids.append(int(item)); kept_scores.append(float(score))\n"
              "return kept_ids, kept_scores",
)

# %%
# Until your exercises pass, the cells below run on the package's versions (recsys_workshop.api.logic).
your_filter_seen = selfcheck.yours_or("11.1", filter_seen, logic.filter_seen)
unseen, unseen_scores = your_filter_seen(raw_items, raw_scores, seen, K)
print(pd.DataFrame({"film": [title[i] for i in unseen], "score": np.round(unseen_scores, 3)}))

# %% [markdown]
# In the API the model server does most of this work (the request carries `"exclude": [seen items]`), and
# the API filters again: a like given a second ago is not in any exported model yet.
#
# ## 2. Diversity: maximal marginal relevance
#
# A top-10 of ten similar films (ten dramas from the same decade) is a worse page than its scores say. MMR
# (Carbonell and Goldstein, 1998) builds the list one item at a time: the next item maximises
#
# $$\lambda \cdot \text{relevance}(i) - (1 - \lambda) \cdot \max_{j \in \text{chosen}} \text{sim}(i, j)$$
#
# where relevance is the model's score min-max scaled to [0, 1] (all 1 if every score is equal) and
# sim is the cosine between two films' genre vectors. $\lambda = 1$ keeps the model's order; lower values
# trade relevance for variety.
#
# ### Exercise 11.2: MMR re-ranking
#
# Write `mmr_rerank(item_ids, scores, features, k, lam)`: `features[i]` is candidate `i`'s feature
# vector (here its genres as a unit vector, a row of `catalogue.genre_unit`). Return
# `(item_ids, scores)` of the `min(k, len(item_ids))` chosen items, in the order chosen, with their
# original scores. Rules: a candidate is chosen at most once; with no item chosen yet the penalty is 0;
# ties go to the earlier candidate (`np.argmax` does that); compute cosines safely (a row of zeros has
# similarity 0 with everything).

# %%
def mmr_rerank(item_ids, scores, features, k, lam):
    ### BEGIN SOLUTION
    scores = np.asarray(scores, dtype=float)
    span = scores.max() - scores.min() if len(scores) else 0.0
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    features = np.asarray(features, dtype=float)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
    similarity = unit @ unit.T
    penalty = np.zeros(len(item_ids))
    available = np.ones(len(item_ids), dtype=bool)
    chosen = []
    for _ in range(min(k, len(item_ids))):
        gain = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        penalty = np.maximum(penalty, similarity[best])
    return [int(item_ids[i]) for i in chosen], [float(scores[i]) for i in chosen]
    ### END SOLUTION


# %%
# Self-check
def _check_mmr():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    selfcheck.equal(mmr_rerank([1, 2, 3], [1.0, 0.9, 0.5], features, 3, 1.0)[0], [1, 2, 3], "lam = 1: the model's order")
    selfcheck.equal(mmr_rerank([1, 2, 3], [1.0, 0.9, 0.5], features, 3, 0.5), ([1, 3, 2], [1.0, 0.5, 0.9]),
                    "lam = 0.5 on two Sci-Fi films (1, 2) and a comedy (3)")
    rng = np.random.default_rng(1)
    for _ in range(40):
        n = int(rng.integers(1, 15))
        ids = [int(i) for i in rng.permutation(200)[:n] + 1]
        scores = list(rng.normal(size=n).round(3))
        feats = (rng.random((n, 5)) < 0.4).astype(float)
        k, lam = int(rng.integers(0, 12)), float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
        got = mmr_rerank(ids, scores, feats, k, lam)
        selfcheck.equal(got, logic.mmr_rerank(ids, scores, feats, k, lam), f"mmr_rerank(k={k}, lam={lam}) on {n} items")
    many, many_scores = filter_seen(raw_items, raw_scores, seen, 3 * K)
    rows = catalogue.rows(many)
    selfcheck.equal(mmr_rerank(many, many_scores, catalogue.genre_unit[rows], K, 0.5),
                    logic.mmr_rerank(many, many_scores, catalogue.genre_unit[rows], K, 0.5), f"user {USER}, lam 0.5")


selfcheck.check(
    "11.2", _check_mmr,
    hint="A greedy loop: each step scores every candidate not yet chosen by its relevance (scaled to [0, 1]) "
         "minus its closeness to what is already on the page, measured as its highest cosine to a chosen item. "
         "The usual slips: the raw score instead of the scaled relevance, the mean instead of the max similarity, "
         "a zero row divided by its zero norm, or a candidate picked twice.",
    code_hint="scores, features, n = np.asarray(scores, float), np.asarray(features, float), len(item_ids)\n"
              "span = scores.max() - scores.min() if n else 0.0\n"
              "relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)\n"
              "norms = np.linalg.norm(features, axis=1, keepdims=True)\n"
              "unit = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0); "
              "similarity = unit @ unit.T\n"
              "penalty, available, chosen = np.zeros(n), np.ones(n, dtype=bool), []\n"
              "for _ in range(min(k, n)):\n"
              "    best = int(np.argmax(np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)))\n"
              "    chosen.append(best); available[best] = False; penalty = np.maximum(penalty, similarity[best])\n"
              "return [int(item_ids[i]) for i in chosen], [float(scores[i]) for i in chosen]",
)

# %% [markdown]
# How much variety does $\lambda$ buy, and at what cost in relevance? Re-rank the user's 30 best unseen
# films for several values and compare the mean pairwise genre similarity of the top 10 (lower = more
# varied) with the mean relevance kept.

# %%
your_mmr_rerank = selfcheck.yours_or("11.2", mmr_rerank, logic.mmr_rerank)
candidates, candidate_scores = your_filter_seen(raw_items, raw_scores, seen, 3 * K)
unit = catalogue.genre_unit[catalogue.rows(candidates)]
rows = []
for lam in (1.0, 0.9, MMR_LAMBDA, 0.5, 0.3):
    chosen, chosen_scores = your_mmr_rerank(candidates, candidate_scores, unit, K, lam)
    u = catalogue.genre_unit[catalogue.rows(chosen)]
    rows.append({"lambda": lam, "genre similarity": (u @ u.T)[np.triu_indices(len(chosen), 1)].mean(),
                 "mean score": np.mean(chosen_scores), "genres": len({g for i in chosen for g in catalogue.genres[catalogue.row_of[i]]})})
print(pd.DataFrame(rows).round(3).to_string(index=False))

# %% [markdown]
# ## 3. Which model version answers? A bandit
#
# With two model versions, an A/B test splits the traffic 50/50 for weeks. A **bandit** shifts traffic to
# the version that earns more clicks while it learns. Each response records its *arm* (the version that
# served it); a click or like on it is a reward. **Thompson sampling** keeps, per arm, a
# Beta(1 + rewards, 1 + pulls - rewards) belief about its click rate, draws one plausible click rate
# from each, and plays the arm with the highest draw: an arm with little data gets wide beliefs and
# thus its chances, an arm known to be worse rarely wins a draw.
#
# ### Exercise 11.3: Thompson sampling's arm choice
#
# Write `choose_arm(arms, pulls, rewards, rng)`: `pulls[arm]` responses served, `rewards[arm]` clicks;
# draw `rng.betavariate(1 + rewards, 1 + pulls - rewards)` for each arm **in the order of `arms`** (one
# draw each) and return the arm with the highest draw (the first one on a tie). `rng` is a
# `random.Random`.

# %%
def choose_arm(arms, pulls, rewards, rng):
    ### BEGIN SOLUTION
    draws = [rng.betavariate(1 + rewards[arm], 1 + pulls[arm] - rewards[arm]) for arm in arms]
    return arms[int(np.argmax(draws))]
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop.labchecks import operations

selfcheck.check(
    "11.3", lambda: operations.choose_arm(choose_arm),
    hint="Each arm's belief about its click rate is a Beta distribution: successes (rewards) and failures "
         "(pulls - rewards), each plus the prior's 1 so that an arm with no data still gets a wide belief. Draw "
         "one sample per arm, in the order of arms, and play the arm with the highest sample (the first on a tie). "
         "The check replays a seeded rng, so any extra draw changes every later choice.",
    code_hint="draws = [rng.betavariate(1 + rewards[arm], 1 + pulls[arm] - rewards[arm]) for arm in arms]\n"
              "return arms[int(np.argmax(draws))]",
)

# %% [markdown]
# A simulation: version 2 gets clicked 12% of the time, version 1 only 8%. How quickly does your bandit
# send the traffic to version 2, compared with a fixed 50/50 split?

# %%
def _package_choose_arm(arms, pulls, rewards, rng):
    bandit = logic.ThompsonSampling(arms)
    bandit.pulls, bandit.rewards, bandit.rng = pulls, rewards, rng
    return bandit.choose()


your_choose_arm = selfcheck.yours_or("11.3", choose_arm, _package_choose_arm)
true_rate = {"1": 0.08, "2": 0.12}
pulls, rewards = {"1": 0, "2": 0}, {"1": 0, "2": 0}
rng, clicks_rng = random.Random(SEED), random.Random(SEED + 1)
for visit in range(N_SIMULATED_VISITS):
    arm = your_choose_arm(["1", "2"], pulls, rewards, rng)
    pulls[arm] += 1
    rewards[arm] += clicks_rng.random() < true_rate[arm]
clicks = sum(rewards.values())
print(f"Thompson sampling: {pulls['2'] / N_SIMULATED_VISITS:.0%} of {N_SIMULATED_VISITS} visits to version 2, "
      f"{clicks} clicks; a 50/50 split would expect {N_SIMULATED_VISITS * np.mean(list(true_rate.values())):.0f}")

# %% [markdown]
# ## 4. The local stack
#
# `local_stack` starts the model server (lab 10) on the versions you exported and the API in front of
# it, each as its own process on a free loopback port, and stops both when closed. The API runs
# Thompson sampling over versions 1 and 2 (`RECSYS_ARMS`). Starting takes a few seconds (the model
# server loads TensorFlow). The API keeps what it learns (new users, feedback, the bandit's counts) in a
# database, given by one URL (`RECSYS_DATABASE_URL`): here a fresh SQLite file for this lab; section 5
# says why a database and not the process's memory.

# %%
from recsys_workshop.api import local_stack, start_api

DATABASE = Path(MODEL_DIR).parent / "api.db"
for leftover in DATABASE.parent.glob("api.db*"):  # start from an empty database each time the lab runs
    leftover.unlink()
API_ENV = {"RECSYS_ARMS": "1,2", "RECSYS_SEED": str(SEED), "RECSYS_DATABASE_URL": f"sqlite:///{DATABASE.resolve()}"}
resources = contextlib.ExitStack()
stack = resources.enter_context(local_stack(MODEL_DIR, env=API_ENV))
print("model server:", stack.model_url)
print("API:         ", stack.api_url)

# %% [markdown]
# A client asks for the user's recommendations. Read the answer: `source` (the model or the fallback),
# `arm` (the version that answered), per film its title, genres and the reason shown in the UI, and a
# `recommendation_id`, which feedback on this answer must send back (section 5).

# %%
answer = requests.get(f"{stack.api_url}/recommendations/{USER}", params={"k": K}, timeout=10).json()
print({key: answer[key] for key in ("source", "arm", "model_version", "policy")})
print("recommendation_id:", answer["recommendation_id"][:48] + "...")
print(pd.DataFrame(answer["items"])[["title", "genres", "score", "reason"]].to_string(index=False))
assert not {i["item_id"] for i in answer["items"]} & histories.seen[USER], "the API filters what the user has seen"

# %% [markdown]
# `mmr_lambda` overrides the diversity setting per request. Bad input gets a 4xx and a reason, never a
# crash:

# %%
for path in (f"/recommendations/{USER}?k=5&mmr_lambda=0.3", f"/recommendations/{USER}?k=0",
             "/recommendations/99999", f"/recommendations/{USER}?k=lots"):
    response = requests.get(stack.api_url + path, timeout=10)
    body = response.json()
    shown = [i["title"] for i in body["items"]] if response.ok else body["error"]
    print(f"{response.status_code}  {path}\n     {shown}")

# %% [markdown]
# Feedback closes the loop: a like is a reward for the arm that served the list (the bandit learns), and
# the film joins the user's seen items (never recommended again). A new user (`POST /users`) with a few
# liked films gets the metadata-based cold-start fallback: genres of what they like, mixed with what is
# popular with people like them.

# %%
top = answer["items"][0]
like = {"user_id": USER, "item_id": top["item_id"], "action": "like", "recommendation_id": answer["recommendation_id"]}
response = requests.post(f"{stack.api_url}/feedback", json=like, timeout=10)
print(response.status_code, response.json(), "| bandit:", requests.get(f"{stack.api_url}/bandit", timeout=10).json())

new_user = requests.post(f"{stack.api_url}/users", json={"liked_item_ids": [50, 172, 181], "age": 25}, timeout=10).json()
fresh = requests.get(f"{stack.api_url}/recommendations/{new_user['user_id']}", params={"k": 5}, timeout=10).json()
print(f"new user {new_user['user_id']}: source={fresh['source']} ({fresh['fallback_reason']})")
for item in fresh["items"]:
    print(f"  {item['title']:45s} {item['reason']}")

# %% [markdown]
# What operations sees: Prometheus metrics at `/metrics` (request counts and latency per route, responses
# per source and per arm, fallbacks by reason, feedback), plus one JSON log line per request in the API's
# log (`stack.api.log_path`).

# %%
metrics = requests.get(f"{stack.api_url}/metrics", timeout=10).text
for line in metrics.splitlines():
    if line.startswith(("recsys_api_arm_total", "recsys_api_recommendations_total", "recsys_api_feedback_total")):
        print(line)

# %% [markdown]
# ## 5. Production rules: credentials, signed feedback, a real database
#
# Everything above worked for anyone who can reach the API. On a real network that is a problem: anybody
# could read every user's feedback, post clicks for any user, or steer the bandit with fabricated clicks
# for one arm. Three rules close that, and the API follows them:
#
# - **Admin calls need a credential.** Reading every user's events (`GET /feedback`) needs the header
#   `Authorization: Bearer <token>`: 401 without it, 403 with a wrong one (compared in constant time). The
#   token comes from a Kubernetes Secret on a cluster and is generated once into
#   `artifacts/secrets/admin-token` (mode 0600) in local mode; `stack.admin_headers()` reads it for you.
#   Switching model versions (lab 10) is guarded the same way, by the same token.
# - **Feedback only on what was really shown.** The `recommendation_id` is the user, the arm, the films
#   and the time, signed with a key only the API knows (HMAC-SHA256). `POST /feedback` must send it
#   back; the API checks the signature, the user and that the film was in the list, and credits the arm
#   *inside* the id: a client cannot name the arm, and one recommendation earns its arm at most one
#   reward. A retry (same recommendation, film and action, or the same `Idempotency-Key` header) is
#   stored once. Writes are also limited per client: too many gets `429` with `Retry-After`.
# - **State in a database, not in the process.** A new user, a like, the bandit's counts: each is
#   committed to the database before the API answers `2xx` (and a database that fails answers `503`,
#   with nothing half-stored). A restart loses nothing, and two API replicas (the GKE overlay runs two)
#   share one database: user ids are handed out by the database, never twice, and each replica reads
#   what the others wrote every second. Locally an SQLite file; on a cluster PostgreSQL, with the
#   schema created by migrations (Alembic) when the API starts.

# %%
forged = {**like, "recommendation_id": answer["recommendation_id"][:-4] + "AAAA"}  # tampered signature
wrong_item = {**like, "item_id": next(i for i in range(1, 1683) if i not in {it["item_id"] for it in answer["items"]})}
for name, body in (("forged id", forged), ("film not shown", wrong_item), ("the same like again", like)):
    response = requests.post(f"{stack.api_url}/feedback", json=body, timeout=10)
    print(f"{name:>20}: {response.status_code} {response.json()}")
for name, headers in (("no token", {}), ("admin token", stack.admin_headers())):
    response = requests.get(f"{stack.api_url}/feedback", params={"user_id": USER}, headers=headers, timeout=10)
    print(f"{name:>20}: GET /feedback -> {response.status_code}",
          response.json().get("error") or [(e["item_id"], e["action"], e["arm"]) for e in response.json()["events"]])

# %% [markdown]
# A second API process on the same database is what a second replica is. It was not running when the like
# and the new user were posted, yet it knows both: they were in the database, not in the first process.

# %%
with start_api(stack.model_url, env=API_ENV, admin_token=stack.admin_token) as replica:
    history = requests.get(f"{replica.url}/users/{USER}", params={"limit": 1}, timeout=10).json()
    print("replica, latest like of user", USER, "->", history["liked"][0]["title"])
    print("replica, new user", new_user["user_id"], "->",
          requests.get(f"{replica.url}/users/{new_user['user_id']}", timeout=10).status_code)
    print("replica, bandit:", requests.get(f"{replica.url}/bandit", timeout=10).json()["arms"])

# %% [markdown]
# On a cluster two more layers keep the API private (`cluster-setup/manifests/base`): the API's Service is
# a `ClusterIP` (reached with `kubectl port-forward`, not from the internet), and **NetworkPolicies** deny
# every connection into the namespace's pods except the ones the workshop needs: only the API may call
# the model server (ports 8080/8081) and PostgreSQL (5432), and the serving pods may send nothing out but
# DNS and those calls. A compromised notebook or load generator cannot unload your model or read the
# database, even with the password.
#
# ## 6. The UI
#
# The API serves a small web page (plain HTML and JavaScript, nothing from the internet): pick a user or
# start as a new one by choosing a few films, see their history and recommendations with reasons, and
# click like or dislike (each click is a `POST /feedback`). Open it now, while the stack runs:

# %%
print("UI:", stack.ui_url, "(on JupyterHub, open it through the hub's proxy: /user/<you>/proxy/<port>/)")

# %% [markdown]
# ## 7. The model server goes down
#
# Production rule: model-server trouble is never an error page. Stop the model server and ask again:
# the API answers from the fallback and says so (`source`, `fallback_reason`). Reload the UI too: it still
# works, with a "fallback" badge.

# %%
stack.stop_model_server()
down = requests.get(f"{stack.api_url}/recommendations/{USER}", params={"k": 5}, timeout=10)
body = down.json()
print(down.status_code, body["source"], body["fallback_reason"], "arm:", body["arm"])
print([item["title"] for item in body["items"]])
print("readiness:", requests.get(f"{stack.api_url}/readyz", timeout=10).json())

# %% [markdown]
# Done with the UI? Stop the API (the model server is already stopped).

# %%
resources.close()

# %% [markdown]
# ## What you saw
# - A model's raw top-k needs business logic before a user sees it: the **seen-item filter**, **MMR**
#   re-ranking (one parameter trades relevance for variety), a **cold-start fallback** for new users and
#   bad days.
# - A **bandit** (Thompson sampling) routes traffic between model versions and learns from clicks;
#   every response carries a signed recommendation id, so feedback credits the arm that really answered.
# - Production rules: admin calls need a token, feedback must come from a real recommendation, writes
#   are limited per client, and the state lives in a database (SQLite here, PostgreSQL on a cluster) so
#   that a restart loses nothing and replicas agree.
# - The API talks to the model server over HTTP, precomputes everything at start-up, bounds every call
#   with a timeout, refuses bad input with a 4xx and a reason, and exposes metrics, logs, health and
#   readiness.
# - When the model server goes down, users still get recommendations, and the response says where they
#   came from.
#
# **Next:** lab 12, load testing: how many requests a second this stack serves before its latency breaks
# the objective.
