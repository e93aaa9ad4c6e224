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
# # Lab 02: collaborative filtering and matrix factorisation
#
# **Time:** about 60 minutes.
#
# > **Before you start**
# > - **You need:** lab 01 (what a recommender is, and how a top-10 list is scored).
# > - **A cluster:** no: everything runs on this machine, in local mode.
# > - **Run All** (2 CPU cores): under a minute at CI size, about 1 min at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - tell explicit feedback (ratings) from implicit feedback (views, clicks, purchases), and turn one
#   into the other;
# - build the baselines every recommender must beat: global mean, user/item biases, most popular,
#   item-item k-nearest neighbours;
# - write latent-factor matrix factorisation in Keras 3 (with biases and L2), train it on explicit
#   ratings (RMSE), and evaluate it as a top-k recommender;
# - look inside it: the learned film factors in 2-D, similar films, and two problems collaborative
#   filtering cannot escape: cold start and popularity bias;
# - explore users and their recommendations from every model side by side.
#
# **Collaborative filtering** learns from what people *do*, not from what items *are*: films watched
# by the same people are similar, whatever their genres. It needs no metadata, and it needs history.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-100k"
K = 10
SEED = 42
MF_FACTORS = 64
MF_L2 = 0.1
MF_LEARNING_RATE = 1e-3
MF_BATCH_SIZE = {"full": 64, "ci": 256}[WORKSHOP_SCALE]
MF_EPOCHS = {"full": 40, "ci": 3}[WORKSHOP_SCALE]

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recsys_workshop import data, metrics, models, selfcheck
from recsys_workshop.models.mf import MatrixFactorization
from recsys_workshop.train import TrainConfig

movielens = data.load(DATASET)
ratings, items = movielens.ratings, movielens.items
title = items.set_index("item_id")["title"]

# %% [markdown]
# ## 1. Explicit and implicit feedback
#
# - **Explicit**: the user tells you how much they liked it (1-5 stars). Precise, rare, biased towards
#   what people chose to rate.
# - **Implicit**: you observe behaviour (played, clicked, bought). Plentiful, but only *positive* and
#   noisy: a film not watched may be disliked, unknown or simply not yet found.
#
# A common bridge is to treat a rating of 4 or more as a positive interaction and forget the value.
# Rating prediction is judged by RMSE; implicit recommenders are judged by the quality of a
# ranked list (precision@k, recall@k, NDCG, MAP), which is what a user actually sees.

# %%
implicit = data.to_implicit(ratings, threshold=4)
print(f"explicit: {len(ratings):,} ratings; implicit (rating >= 4): {len(implicit):,} positive interactions")
n_users, n_items = ratings.user_id.nunique(), ratings.item_id.nunique()
print(f"user-item matrix: {n_users} x {n_items} = {n_users * n_items:,} cells, "
      f"{len(ratings) / (n_users * n_items):.1%} filled")

# %% [markdown]
# ## 2. Rating prediction: baselines
#
# We hold out data the model never sees. For rating prediction, a random 80/20 split is the
# tradition (we carve a validation set out of the training part for early stopping later).
#
# - **Global mean**: predict the average rating for everything.
# - **Biases**: some users rate high, some films are loved: $\hat r_{ui} = \mu + b_u + b_i$.

# %%
train_valid, test_ratings = data.random_split(ratings, 0.8, seed=SEED)
train_ratings, valid_ratings = data.random_split(train_valid, 0.8, seed=SEED)


def test_rmse(model) -> float:
    return metrics.rmse(test_ratings["rating"], model.score(test_ratings.user_id, test_ratings.item_id))


rmse = {}
for model in (models.GlobalMean(), models.BiasBaseline()):
    model.fit(train_valid)
    rmse[model.name] = test_rmse(model)
pd.Series(rmse, name="test RMSE").round(4)

# %% [markdown]
# ## 3. Matrix factorisation
#
# Each user $u$ and each film $i$ get a vector of $f$ *latent factors*, $p_u$ and $q_i$; a rating is
# predicted from their dot product plus the biases:
#
# $$\hat r_{ui} = \mu + b_u + b_i + p_u \cdot q_i$$
#
# Training minimises the squared error on the known ratings plus an L2 penalty that keeps the
# factors small (without it the model memorises the training ratings):
#
# $$\sum_{(u,i)} (r_{ui} - \hat r_{ui})^2 + \lambda \left(\lVert p_u\rVert^2 + \lVert q_i\rVert^2 + b_u^2 + b_i^2\right)$$
#
# Nobody tells the model what the factors mean; it finds whatever directions explain the ratings best
# (often something like "serious vs light" or "cult vs mainstream").
#
# ### Exercise 2.1: the MF model in Keras 3
#
# Complete `build_mf(n_users, n_items, n_factors, global_mean)`. Inputs are the integer *row* of the
# user and of the item. Use four `keras.layers.Embedding` layers named `user_factors`, `item_factors`
# (size `n_factors`), `user_bias` and `item_bias` (size 1, initialised to zeros), and output
# `global_mean + b_u + b_i + sum(p_u * q_i)`: one number per example, shape `(batch,)`.
# (The package's version also adds the L2 penalty; here we leave it out to keep the exercise short.)

# %%
import keras
from keras import layers, ops


def build_mf(n_users: int, n_items: int, n_factors: int, global_mean: float) -> keras.Model:
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    ### BEGIN SOLUTION
    p = layers.Embedding(n_users, n_factors, name="user_factors")(user)
    q = layers.Embedding(n_items, n_factors, name="item_factors")(item)
    b_u = layers.Embedding(n_users, 1, embeddings_initializer="zeros", name="user_bias")(user)
    b_i = layers.Embedding(n_items, 1, embeddings_initializer="zeros", name="item_bias")(item)
    rating = global_mean + ops.squeeze(b_u, -1) + ops.squeeze(b_i, -1) + ops.sum(p * q, axis=-1)
    ### END SOLUTION
    return keras.Model({"user": user, "item": item}, rating)


# %%
# Self-check
from recsys_workshop import labchecks

selfcheck.check(
    "2.1",
    lambda: labchecks.mf_model(build_mf),
    hint="One embedding table per factor and per bias; a prediction is the global mean plus both biases "
    "plus the dot product of the two factor vectors, one number per example.",
    code_hint="layers.Embedding(n_users, n_factors, name='user_factors')(user), likewise item_factors; "
    "user_bias/item_bias: layers.Embedding(n, 1, embeddings_initializer='zeros', name=...); "
    "rating = global_mean + ops.squeeze(b_u, -1) + ops.squeeze(b_i, -1) + ops.sum(p * q, axis=-1).",
)

# %% [markdown]
# The package's `MatrixFactorization` is the same model plus the L2 penalty on the factors of each
# batch. `train.fit` (called by `.fit`) trains any Keras recommender of the workshop the same way:
# Adam, early stopping on the validation RMSE, the best weights kept, and a history you can plot.

# %%
config = TrainConfig(epochs=MF_EPOCHS, batch_size=MF_BATCH_SIZE, learning_rate=MF_LEARNING_RATE, seed=SEED, patience=3, verbose=2)
mf = MatrixFactorization(MF_FACTORS, use_bias=True, l2=MF_L2, seed=SEED)
history = mf.fit(train_ratings, validation=valid_ratings, config=config).history_
mf_plain = MatrixFactorization(MF_FACTORS, use_bias=False, l2=MF_L2, seed=SEED)
history_plain = mf_plain.fit(train_ratings, validation=valid_ratings, config=config).history_

fig, ax = plt.subplots(figsize=(6, 3))
for name, h in (("MF + biases", history), ("MF", history_plain)):
    ax.plot(h.index, h["rmse"], ls="--", label=f"{name}, train")
    ax.plot(h.index, h["val_rmse"], label=f"{name}, validation")
ax.set(xlabel="epoch", ylabel="RMSE", title="Learning curves")
ax.legend()
plt.show()

rmse.update({"mf": test_rmse(mf_plain), "mf+bias": test_rmse(mf)})
pd.Series(rmse, name="test RMSE").round(4)

# %% [markdown]
# ## 4. From rating prediction to top-k recommendation
#
# A user does not see RMSE; they see a list. To judge lists we hold out 25% of each film's ratings
# (the protocol of Microsoft Recommenders' benchmark: per-item stratified, seed 42), recommend 10
# unseen films to every test user, and count how many of the held-out films appear.
#
# Two more baselines: **most popular** and **item-item kNN** ("people who watched this also
# watched", cosine similarity between the films' audiences).
#
# ### Exercise 2.2: top-k without what the user has seen
#
# `scores` is a `(n_users, n_items)` array, `seen` a boolean array of the same shape (True where the
# user rated the film in training). Return, for each row, the column indices of the `k` highest
# scores among the unseen items, best first; break ties by the smaller column index.

# %%
def top_k_unseen(scores: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    ### BEGIN SOLUTION
    masked = np.where(seen, -np.inf, scores)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "2.2",
    lambda: labchecks.top_k_unseen(top_k_unseen, mf, K),
    hint="Make the seen films impossible to pick (a score no unseen film can lose to), then sort each row "
    "from the highest score down with a sort that keeps equal scores in column order.",
    code_hint="masked = np.where(seen, -np.inf, scores); np.argsort(-masked, axis=1, kind='stable')[:, :k]",
)

# %%
train, test = data.stratified_split(ratings, 0.75, filter_by="item", seed=SEED)
genres = data.genre_matrix(items)

ranking_models = {
    "most-popular": models.MostPopular().fit(train),
    "item-knn": models.ItemKNN(n_neighbors=100).fit(train),
    "bias-baseline": models.BiasBaseline().fit(train),
    # no validation set given: train.fit early-stops on a random 10% of `train` (config.validation_fraction)
    "mf+bias": MatrixFactorization(MF_FACTORS, l2=MF_L2, seed=SEED).fit(train, config=config),
}
leaderboard = pd.concat(
    [metrics.evaluate(m, train, test, K, item_features=genres, name=name) for name, m in ranking_models.items()],
    ignore_index=True,
).set_index("model")
leaderboard[["precision@10", "recall@10", "ndcg@10", "map", "coverage", "novelty", "popularity_bias"]].round(3)

# %% [markdown]
# Read the table carefully: a model trained to predict *ratings* is not automatically good at
# *ranking*. MF with biases predicts ratings well, but its list is led by films that are rated high
# on average, including obscure films a user is unlikely to have seen; item-kNN, which only asks
# "what do people who watched what you watched also watch?", wins at top-k. Lab 03 trains deep
# models directly for ranking, on implicit feedback.
#
# ## 5. Inside the model: the film factors
#
# Project the learned film vectors $q_i$ onto their two main directions (PCA) and label a few
# well-known films. Films close together are rated alike by the same people.

# %%
from sklearn.decomposition import PCA

popular_ids = data.item_popularity(ratings).index[:400]
cols = mf.item_columns(popular_ids)
xy = PCA(n_components=2, random_state=SEED).fit_transform(mf.item_factors_[cols])
labelled = ["Star Wars (1977)", "Return of the Jedi (1983)", "Toy Story (1995)", "Fargo (1996)",
            "Pulp Fiction (1994)", "Schindler's List (1993)", "Independence Day (ID4) (1996)",
            "Titanic (1997)", "Scream (1996)", "Aladdin (1992)", "Casablanca (1942)", "Liar Liar (1997)"]

fig, ax = plt.subplots(figsize=(8, 6))
ax.scatter(xy[:, 0], xy[:, 1], s=8, color="lightgrey")
for x, y, item_id in zip(xy[:, 0], xy[:, 1], popular_ids):
    if title[item_id] in labelled:
        ax.scatter(x, y, s=20, color="tab:red")
        ax.annotate(title[item_id], (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
ax.set(title="Film factors of MF (PCA of the 400 most rated films)", xlabel="component 1", ylabel="component 2")
plt.show()

# %% [markdown]
# Similar films, from the factors alone (cosine similarity between $q_i$ vectors):

# %%
def similar_films(model, item_id: int, n: int = 5) -> pd.Series:
    factors = model.item_factors_ / np.linalg.norm(model.item_factors_, axis=1, keepdims=True)
    col = model.item_columns([item_id])[0]
    sims = factors @ factors[col]
    sims[col] = -np.inf
    best = np.argsort(-sims)[:n]
    return pd.Series(sims[best].round(3), index=title[model.item_ids_[best]].to_numpy(), name=title[item_id])


pd.concat([similar_films(mf, 50).reset_index(), similar_films(mf, 1).reset_index()], axis=1)

# %% [markdown]
# ## 6. What collaborative filtering cannot do
#
# **Cold start.** A user who just signed up has no row in the factor matrix. The workshop's models
# then fall back to the most popular films: everyone new gets the same list. (Lab 03's hybrid model
# uses the user's age, gender and occupation instead; lab 01's content-based model solves the
# symmetric problem for new *films*.)

# %%
new_user = 10_000
cold = ranking_models["mf+bias"].recommend([new_user], k=5)
popular_top5 = ranking_models["most-popular"].recommend([new_user], k=5)
print("a brand-new user's list is the popular list:", cold.item_id.tolist() == popular_top5.item_id.tolist())
cold.assign(title=cold.item_id.map(title))

# %% [markdown]
# **Popularity bias, with numbers.** Films with few ratings have poorly estimated factors, and models
# trained on popular films recommend popular films. The error is higher on the long tail, and the
# share of recommendations that go to the 10% most popular films is far above 10%:

# %%
counts = ratings.groupby("item_id").size()
bucket = pd.cut(test_ratings.item_id.map(counts), [0, 20, 100, 1000], labels=["< 20 ratings", "20-100", "> 100"])
errors = (test_ratings["rating"] - mf.score(test_ratings.user_id, test_ratings.item_id)) ** 2
print("MF test RMSE by film popularity:")
print(errors.groupby(bucket, observed=True).mean().pow(0.5).round(3).to_string())

head = set(data.item_popularity(train).index[: int(np.ceil(0.1 * train.item_id.nunique()))])
shares = {name: m.recommend(test.user_id.unique(), k=K).item_id.isin(head).mean() for name, m in ranking_models.items()}
pd.Series(shares, name="share of recommendations from the top-10% films").round(3)

# %% [markdown]
# ## 7. Explore
#
# Pick a user: their highest-rated films, and the top 5 of every model side by side. (The widget needs
# a live kernel; the cell below also prints the first user's view, so it reads fine without one.)

# %%
import ipywidgets as widgets
from IPython.display import display


def user_view(user_id: int) -> pd.DataFrame:
    history = train[train.user_id == user_id].nlargest(5, "rating")
    columns = {"liked (rating)": [f"{title[i]} ({r:.0f})" for i, r in zip(history.item_id, history.rating)]}
    for name, model in ranking_models.items():
        columns[name] = title[model.recommend([user_id], k=5).item_id].tolist()
    return pd.DataFrame(columns)


picker = widgets.Dropdown(options=sorted(train.user_id.unique())[:200], value=1, description="user")
view = widgets.Output()


def refresh(change=None) -> None:
    view.clear_output(wait=True)
    with view:
        display(user_view(picker.value))


picker.observe(refresh, names="value")
refresh()
display(widgets.VBox([picker, view]))

# %% [markdown]
# ## What you saw
# - Biases alone beat the global mean by a wide margin; matrix factorisation with biases beats both
#   on RMSE.
# - Good rating prediction is not good ranking: on top-k, item-kNN beats the rating-trained MF.
# - Learned factors place similar films together without any metadata.
# - Cold start and popularity bias are built into collaborative filtering.
#
# **Next:** lab 03, deep recommenders trained for ranking, with metadata for the cold start.
