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
# # Lab 00: the environment and the data
#
# **Time:** about 25 minutes.
#
# > **Before you start**
# > - **You need:** `make install` (or a seat on the class JupyterHub), and internet for the first download of
# >   MovieLens (or `MOVIELENS_DIR` pointing at a copy).
# > - **A cluster:** no. The lab checks whether one is reachable and tells you which mode the labs will run in.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - check that your environment has what the workshop needs, and find out whether the labs will run
#   in *local mode* (no cluster: everything runs as processes on this machine) or in *cluster mode*;
# - load MovieLens, verified against the checksums GroupLens published;
# - look at the data the way a recommender engineer does: the rating distribution, the long tail of
#   popularity, how sparse the user-item matrix is, how active users are, and what genres there are.
#
# **How the labs work.** Each lab is a notebook with explanations, code to run, and exercises.
# An exercise is a cell that raises `NotImplementedError("Exercise N.M")` until you write the code;
# the cell after it is a *self-check* that tells you whether your answer is right, with a hint when it
# is not. The completed notebooks are in `solutions/`.
#
# The next cell is the lab's *parameter cell*: the only place that decides how big the run is.
# `WORKSHOP_SCALE=ci` (set by the test suite) makes a quick run; the default `full` is the real thing.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-100k"  # "ml-100k", "ml-latest-small" or "ml-1m"
MATRIX_PLOT_USERS = {"full": 943, "ci": 200}[WORKSHOP_SCALE]

# %% [markdown]
# ## 1. The environment
#
# The workshop pins every dependency (`requirements/lock.txt`). The table shows what this kernel
# runs: the machine, then the package versions. Nothing heavy is imported to find them.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recsys_workshop import data, environment, kube

environment.report()

# %% [markdown]
# Is there a Kubernetes cluster? The workshop never pretends: it looks for a kubeconfig context (or
# the service account of a pod) and asks the cluster for its version. With no answer, every lab runs
# in **local mode**: the training job, the model server and the pipeline run as processes here, from
# the same code that a cluster would run.

# %%
context = kube.cluster_context()
MODE = "cluster" if context is not None and context.reachable else "local"
print(f"Workshop mode: {MODE}")
if context is None:
    print("No Kubernetes context is configured: the labs run locally.")
else:
    print(context)

# %% [markdown]
# ## 2. Loading MovieLens
#
# `data.load` finds the data set in `$MOVIELENS_DIR` (a folder with the official zips or extracted
# folders), in the download cache, or downloads it from GroupLens. Every file is checked against the
# published SHA-256 before it is read, and every column has a name: `user_id`, `item_id`,
# `rating`, `timestamp`. (The workshop this one grew from read columns by position, and silently
# swapped users and films when a newer file changed the order.)

# %%
movielens = data.load(DATASET)
ratings, items, users = movielens.ratings, movielens.items, movielens.users
ratings.head()

# %%
items.head()

# %% [markdown]
# A checkpoint: your numbers should be exactly these (the test suite compares them too).

# %%
# NBVAL_CHECK_OUTPUT
summary = data.load("ml-100k").summary()
print(f"{summary['ratings']:,} ratings by {summary['users']:,} users on {summary['items']:,} films")
print(f"density {summary['density']:.4f}")
# Expected output:
# 100,000 ratings by 943 users on 1,682 films
# density 0.0630

# %% [markdown]
# ## 3. How do people rate?
#
# Explicit ratings are skewed: people mostly rate what they chose to watch, and they chose it because
# they expected to like it. That is the first bias of recommender data: ratings are *missing not at
# random*.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ratings["rating"].value_counts().sort_index().plot.bar(ax=ax, color="tab:blue")
ax.set(xlabel="rating", ylabel="number of ratings", title=f"Rating distribution ({DATASET})")
plt.show()
print(f"mean rating {ratings['rating'].mean():.2f}, median {ratings['rating'].median():.1f}")

# %% [markdown]
# ## 4. The long tail
#
# A few films collect most of the ratings; most films get very few. A recommender trained on this
# data sees the popular films over and over, and learns little about the rest: this *popularity bias*
# comes back in every lab.

# %%
popularity = data.item_popularity(ratings)
share = popularity.cumsum() / popularity.sum()

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.plot(np.arange(1, len(popularity) + 1), popularity.to_numpy())
left.set(xlabel="film rank by popularity", ylabel="number of ratings", title="The long tail")
right.plot(np.arange(1, len(share) + 1) / len(share), share.to_numpy())
right.axhline(0.5, color="grey", lw=0.8, ls="--")
right.set(xlabel="fraction of films (most popular first)", ylabel="share of all ratings", title="Cumulative share")
plt.show()

top = popularity.head(5).rename_axis("item_id").reset_index().merge(items[["item_id", "title"]], on="item_id")
top

# %% [markdown]
# ### Exercise 0.1
#
# What share of all ratings goes to the **10% most popular films** (the "head")? Write
# `head_share(ratings, top_fraction)`: count the ratings of every film, take the
# `ceil(top_fraction * number_of_films)` most rated films, and return their share of all ratings
# as a float between 0 and 1.

# %%
def head_share(ratings: pd.DataFrame, top_fraction: float) -> float:
    ### BEGIN SOLUTION
    counts = ratings.groupby("item_id").size().sort_values(ascending=False).to_numpy()
    n_head = int(np.ceil(top_fraction * len(counts)))
    return float(counts[:n_head].sum() / counts.sum())
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop import labchecks, selfcheck

selfcheck.check(
    "0.1",
    lambda: labchecks.head_share(head_share, ratings),
    hint="The head is the most rated films: count the ratings of each film, keep the largest counts, "
    "and compare their sum with all ratings.",
    code_hint="counts = ratings.groupby('item_id').size().sort_values(ascending=False); take the first "
    "int(np.ceil(top_fraction * len(counts))) of them; return float(head.sum() / counts.sum()).",
)
print(f"The top 10% of films receive {head_share(ratings, 0.1):.0%} of all ratings.")

# %% [markdown]
# ## 5. A sparse matrix
#
# Put users in rows and films in columns: a recommender fills in the blanks of this matrix. Almost
# all of it is blank. Below, each dot is a rating (users and films sorted by activity).

# %%
by_activity = ratings["user_id"].value_counts().index[:MATRIX_PLOT_USERS]
film_order = {item: rank for rank, item in enumerate(popularity.index)}
user_order = {user: rank for rank, user in enumerate(by_activity)}
shown = ratings[ratings["user_id"].isin(user_order)]

fig, ax = plt.subplots(figsize=(8, 4))
ax.scatter(shown["item_id"].map(film_order), shown["user_id"].map(user_order), s=0.2, color="black")
ax.set(xlabel="films (most popular left)", ylabel="users (most active top)", title="Who rated what")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# ### Exercise 0.2
#
# Write `sparsity(ratings)`: the fraction of the user-film matrix that is **empty**, where the matrix
# has one row per user and one column per film that appear in `ratings`.

# %%
def sparsity(ratings: pd.DataFrame) -> float:
    ### BEGIN SOLUTION
    n_users = ratings["user_id"].nunique()
    n_items = ratings["item_id"].nunique()
    return 1.0 - len(ratings) / (n_users * n_items)
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "0.2",
    lambda: labchecks.sparsity(sparsity, ratings),
    hint="The matrix has (distinct users) x (distinct films) cells and one filled cell per rating; "
    "sparsity is the empty share.",
    code_hint="1 - len(ratings) / (ratings['user_id'].nunique() * ratings['item_id'].nunique())",
)
print(f"{sparsity(ratings):.1%} of the matrix is empty.")

# %% [markdown]
# ## 6. How active are users?
#
# Every ml-100k user rated at least 20 films (GroupLens kept only those), but a few rated hundreds.
# A test split has to keep that in mind: a random split can leave a light user with almost no history.

# %%
per_user = ratings.groupby("user_id").size()
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(per_user, bins=np.logspace(np.log10(per_user.min()), np.log10(per_user.max()), 30))
ax.set(xscale="log", xlabel="ratings per user (log scale)", ylabel="users", title="User activity")
plt.show()
per_user.describe().round(1).to_frame("ratings per user").T

# %% [markdown]
# ## 7. Genres, and who the users are
#
# Films carry genres (a film can have several), and ml-100k users carry age, gender and occupation.
# Later labs use both: content-based filtering (lab 01) and the hybrid deep model (lab 03) recommend
# from these features when there is no rating history to learn from.

# %%
genre_counts = items.explode("genres")["genres"].value_counts()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
genre_counts.sort_values().plot.barh(ax=left, color="tab:green")
left.set(xlabel="films", title="Films per genre")
if users is not None:
    users["occupation"].value_counts().sort_values().plot.barh(ax=right, color="tab:orange")
    right.set(xlabel="users", title="Users per occupation")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. The splits we will use
#
# How you hold data out decides what your metric means. `recsys_workshop.data` has every protocol the
# labs and benchmarks use, each deterministic given its seed:
#
# | split | what it tests | used by |
# |---|---|---|
# | `random_split` | rating prediction on random held-out ratings | RMSE (lab 02) |
# | `stratified_split` (per user or item) | top-k for users with history | Microsoft Recommenders' benchmark |
# | `chrono_split` | the future from the past | a realistic offline test |
# | `leave_one_out_split` | rank the latest item among 99 negatives | the NCF paper |
# | `official_split` | GroupLens' own `ua`/`ub`, `u1`-`u5` | comparisons with papers |

# %%
train, test = data.stratified_split(ratings, 0.75, filter_by="user", seed=42)
print(f"train {len(train):,} rows, test {len(test):,} rows; "
      f"test users without training history: {len(set(test.user_id) - set(train.user_id))}")

# %% [markdown]
# ## What you saw
# - The environment, and the mode the labs will run in.
# - MovieLens: skewed ratings, a long tail (the top 10% of films get a large share of the ratings),
#   a matrix that is about 94% empty, users whose activity varies by two orders of magnitude.
#
# **Next:** lab 01, what a recommender is and a first one built from film content.
