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
# # Lab 04: implicit feedback: pairwise losses and two-tower retrieval
#
# **Time:** about 45 minutes.
#
# > **Before you start**
# > - **You need:** lab 03 (negative sampling, NCF, the hybrid: this lab compares its models with
# >   them, and loads them if lab 03 ran on this machine).
# > - **A cluster:** no: everything runs on this machine, in local mode.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - write the triplet (margin) loss, compare it with BPR, and compare two ways of drawing negatives;
# - write the two corrections of the in-batch softmax (logQ and accidental hits), check them against
#   keras-rs, and train a two-tower retrieval model with your code;
# - search the whole catalogue by brute force and with an approximate (HNSW) index, and measure what
#   the index misses;
# - compare the pairwise and retrieval models with lab 03's on one held-out split.
#
# Lab 03 trained *pointwise* models: "is this (user, film) pair an interaction?", with sampled
# negatives and the binary cross-entropy. Here the question becomes a comparison: "which of two films
# does the user prefer?" (a triplet of user, liked film, sampled film), then "which film of the whole
# batch is the user's?" (a softmax over the batch). Same data, same split, the same `train.fit`, and
# the same `recommend` and `score` as every model so far.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-100k"
K = 10
SEED = 42
N_FACTORS = {"full": 32, "ci": 8}[WORKSHOP_SCALE]  # lab 03's; the triplet and two-tower models use 2 x N_FACTORS
EPOCHS = {"full": 20, "ci": 1}[WORKSHOP_SCALE]  # at most: early stopping usually ends a run sooner
PATIENCE = 2
TRIPLET_BATCH_SIZE = {"full": 512, "ci": 4096}[WORKSHOP_SCALE]
TRIPLET_LEARNING_RATE = {"full": 5e-3, "ci": 5e-2}[WORKSHOP_SCALE]
TWO_TOWER_BATCH_SIZE = {"full": 256, "ci": 512}[WORKSHOP_SCALE]  # the batch is also the set of negatives
TWO_TOWER_LEARNING_RATE = 1e-2
ANN_CATALOGUE_SIZE = {"full": 100_000, "ci": 5_000}[WORKSHOP_SCALE]  # the scaled-up retrieval test
# Lab 03's settings, to load the models it saved (or train them again, saying why)
LAB_03 = {
    "full": {"mlp_layers": (64, 32, 16), "n_negatives": 4, "batch_size": 1024, "learning_rate": 2e-3},
    "ci": {"mlp_layers": (16, 8), "n_negatives": 2, "batch_size": 8192, "learning_rate": 1e-2},
}[WORKSHOP_SCALE]

# %%
import time
from unittest import mock

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from keras import ops

from recsys_workshop import data, metrics, models, selfcheck
from recsys_workshop.models import triplet, two_tower
from recsys_workshop.models.hybrid import HybridModel
from recsys_workshop.models.ncf import NCF
from recsys_workshop.models.triplet import TripletModel
from recsys_workshop.models.two_tower import TwoTower
from recsys_workshop.train import TrainConfig, saved
from recsys_workshop.train.curves import plot_learning_curves

movielens = data.load(DATASET)
ratings, items, users = movielens.ratings, movielens.items, movielens.users
title = items.set_index("item_id")["title"]
genres = data.genre_matrix(items)

# %% [markdown]
# Lab 03's split: 75% of each film's ratings for training, the rest held out, every rating an
# interaction. The triplet networks and lab 03's models go through `saved.fit`, as in lab 03: trained
# once, then loaded while nothing they depend on changes (the line it prints says which); the
# two-tower always trains, since it runs your code. And lab 03's `evaluate`
# helper, which keeps each model's row for the comparison at the end:

# %%
# NBVAL_CHECK_OUTPUT
train, test = data.stratified_split(ratings, 0.75, filter_by="item", seed=SEED)
print(f"train: {len(train):,} interactions, {train.user_id.nunique()} users, {train.item_id.nunique():,} films")
# Expected output:
# train: 75,066 interactions, 943 users, 1,682 films

# %%
leaderboard = {}


def evaluate(model, name=None) -> pd.DataFrame:
    row = metrics.evaluate(model, train, test, K, item_features=genres, name=name)
    history = getattr(model, "history_", None)
    row["epochs"] = len(history) if history is not None else np.nan  # NaN: not a Keras model
    row["s/epoch"] = history["seconds"].mean() if history is not None else np.nan
    leaderboard[row["model"].iloc[0]] = row
    return row


popular = models.MostPopular().fit(train)
evaluate(popular)[["model", "precision@10", "ndcg@10", "popularity_bias"]].round(3)

# %% [markdown]
# ## 1. The triplet network: margin loss, BPR and harder negatives
#
# Lab 03's pointwise models ask "is this pair an interaction?". A *pairwise* model asks what a recommender
# really needs: "does the user prefer film $i^+$ to film $i^-$?". A **triplet network** takes
# (user, liked film, sampled film), embeds all three (one item table serves both films: a *siamese*
# item tower) and compares the similarities:
#
# - **margin (hinge) loss**, with $s$ the cosine similarity and a margin $m$:
#
#   $$\ell_{\text{margin}} = \max\big(0,\; m - s(u, i^+) + s(u, i^-)\big)$$
#
#   Zero once the liked film is ahead by at least $m$: satisfied triplets stop teaching anything,
#   so most of the learning comes from the few hard triplets.
# - **BPR** (Rendle et al., 2009), with $s$ the dot product:
#
#   $$\ell_{\text{BPR}} = -\log \sigma\big(s(u, i^+) - s(u, i^-)\big) = \operatorname{softplus}\big(s(u, i^-) - s(u, i^+)\big)$$
#
#   the negative log-likelihood that the user ranks $i^+$ above $i^-$; it never reaches zero but its
#   gradient $\sigma(s^- - s^+)$ fades as the pair gets well ordered. Averaged over all pairs it is a
#   smooth stand-in for the AUC.
#
# ### Exercise 4.1: the triplet (margin) loss
#
# Write `margin_loss(positive_similarity, negative_similarity, margin)`: the loss of each triplet,
# same shape as the inputs. Use `keras.ops` (`ops.maximum`, ...) rather than NumPy, so that it also
# works on the symbolic tensors inside a Keras model.

# %%
def margin_loss(positive_similarity, negative_similarity, margin=1.0):
    ### BEGIN SOLUTION
    return ops.maximum(margin - positive_similarity + negative_similarity, 0.0)
    ### END SOLUTION


# %%
# Self-check
def _check_margin_loss() -> None:
    selfcheck.close(ops.convert_to_numpy(margin_loss(np.float32(0.9), np.float32(0.2), 1.0)), 0.3, rtol=1e-5,
                    what="s+ = 0.9, s- = 0.2, margin 1")
    selfcheck.close(ops.convert_to_numpy(margin_loss(np.float32(0.9), np.float32(-0.5), 1.0)), 0.0,
                    what="a triplet ahead by more than the margin")
    rng = np.random.default_rng(0)
    positive, negative = rng.uniform(-1, 1, (2, 100, 1)).astype("float32")
    for margin in (0.5, 1.0):
        selfcheck.close(ops.convert_to_numpy(margin_loss(positive, negative, margin)),
                        ops.convert_to_numpy(triplet.margin_loss(positive, negative, margin)), rtol=1e-6,
                        what=f"random similarities, margin {margin}")
    # inside a Keras model (symbolic tensors)
    s_pos, s_neg = keras.Input(shape=(1,)), keras.Input(shape=(1,))
    net = keras.Model([s_pos, s_neg], margin_loss(s_pos, s_neg, 0.5))
    selfcheck.close(np.asarray(net([positive, negative])),
                    ops.convert_to_numpy(triplet.margin_loss(positive, negative, 0.5)), rtol=1e-6,
                    what="inside a Keras model")


selfcheck.check(
    "4.1",
    _check_margin_loss,
    hint="A triplet costs nothing once the positive beats the negative by at least the margin, and the "
    "shortfall otherwise; it is never negative. Use keras.ops, not NumPy: np.maximum fails on the symbolic "
    "tensors inside a Keras model.",
    code_hint="return ops.maximum(margin - positive_similarity + negative_similarity, 0.0)",
)

# %% [markdown]
# The two losses as a function of the gap $d = s(u, i^+) - s(u, i^-)$, drawn with the package's
# `triplet.margin_loss` (the same numbers as yours once Exercise 4.1 passes) and `triplet.bpr_loss`:

# %%
gap = np.linspace(-3, 3, 121).astype("float32")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(gap, ops.convert_to_numpy(triplet.margin_loss(gap, np.zeros_like(gap), 1.0)), label="margin (m = 1)")
ax.plot(gap, ops.convert_to_numpy(triplet.bpr_loss(gap, np.zeros_like(gap))), label="BPR")
ax.set(xlabel="gap s(u, i+) - s(u, i-)", ylabel="loss of the triplet")
ax.legend()
plt.show()

# %% [markdown]
# `TripletModel` trains either loss (one sampled negative per positive, fresh every epoch) and scores
# with the same similarity it was trained with. We train the margin loss and BPR with uniform
# negatives, then BPR with popularity negatives. The margin model trains with *your* `margin_loss`,
# swapped into the package's network with `mock.patch` once it has passed its check (the package's until
# then: the models are saved, and later runs load them). As in lab 03, a margin model saved by other code
# is trained again with yours.

# %%
triplet_config = TrainConfig(
    epochs=EPOCHS, batch_size=TRIPLET_BATCH_SIZE, learning_rate=TRIPLET_LEARNING_RATE, patience=PATIENCE, seed=SEED,
    verbose=2,
)
triplet_models = {}
with mock.patch.object(triplet, "margin_loss", selfcheck.yours_if_passed("4.1", margin_loss, triplet.margin_loss)):
    for loss, negatives in (("margin", "uniform"), ("bpr", "uniform"), ("bpr", "popularity")):
        model = TripletModel(2 * N_FACTORS, loss=loss, negatives=negatives, seed=SEED)  # margin: with your loss
        print(f"--- {model.name}")
        mine = selfcheck.yours_in_use({"4.1": margin_loss}) if loss == "margin" else {}
        triplet_models[model.name] = saved.fit(model, train, config=triplet_config, yours=mine)

plot_learning_curves(triplet_models, heading="Triplet networks: loss per epoch")

# %% [markdown]
# The curves are not comparable across losses (a hinge and a log-likelihood), nor across sampling
# strategies: popularity negatives are harder, so the BPR loss stays higher. Compare the lists
# instead: accuracy, and how much they lean on popular films (`popularity_bias`: the mean popularity
# percentile of the recommended films, 0.5 for a random film, close to 1 for "most popular") and how
# much of the catalogue they use (`coverage`).

# %%
sampling = pd.concat([evaluate(m) for m in triplet_models.values()], ignore_index=True).set_index("model")
sampling[["precision@10", "ndcg@10", "coverage", "novelty", "popularity_bias"]].round(3)

# %% [markdown]
# What the full-size run shows (the CI run trains too little to show anything):
#
# - **margin vs BPR**: BPR with the dot product ranks clearly better than the margin loss with the
#   cosine (NDCG@10 about 0.38 against 0.31). One reason: a dot product can also encode how popular a
#   film is (the length of its vector), a cosine cannot, and popularity is a strong signal in
#   MovieLens.
# - **uniform vs popularity negatives**: popularity sampling does what it promises *and* shows what
#   it costs. The lists lean much less on popular films (`popularity_bias` about 0.85 against 0.94,
#   nearly twice the coverage, higher novelty), and they are *less* accurate on this test set (NDCG@10
#   about 0.30 against 0.38), whose held-out films are themselves mostly popular. Harder negatives are
#   a lever between accuracy and discovery, not a free gain; which side matters is a business
#   decision (lab 01), and an offline split that rewards popularity will always favour uniform
#   sampling.

# %% [markdown]
# ## 2. Two-tower retrieval
#
# Lab 03's NCF and hybrid score a (user, film) pair with one network, so ranking the catalogue for one
# user costs one network evaluation per film: fine for 1,682 films, impractical for millions. A **two-tower**
# model keeps the two sides apart until the very end: a *user tower* and an *item tower* map each side
# to a unit vector, and the score is their cosine similarity divided by a temperature $\tau$:
#
# $$s(u, i) = \frac{\langle f(u), g(i) \rangle}{\tau}, \qquad \lVert f(u) \rVert = \lVert g(i) \rVert = 1 .$$
#
# Item vectors are computed once; recommending is a nearest-neighbour search. Here the user tower is
# an ID embedding and the item tower an ID embedding plus the genres, each followed by a dense
# projection.
#
# **In-batch softmax.** Take a batch of $B$ (user, film) positives. For user $b$, the films of the
# other rows are the negatives: no sampling needed. The loss is a softmax cross-entropy over the batch,
# with the $(B, B)$ matrix of scores $s_{bc}$ and the diagonal as targets:
#
# $$\mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \log \frac{e^{s_{bb}}}{\sum_{c=1}^{B} e^{s_{bc}}}$$
#
# Two corrections (Yi et al., *Sampling-bias-corrected neural modeling*, RecSys 2019):
#
# - **logQ correction**: a film appears in batches in proportion to its popularity $p_c$, so popular
#   films are used as negatives far more often than rare ones and the model learns to push them down.
#   Subtracting $\log p_c$ from every logit of column $c$, $s_{bc} \leftarrow s_{bc} - \log p_c$,
#   removes that bias: the batch softmax then approximates the full softmax over the catalogue.
# - **accidental hits**: the same film can appear twice in a batch (two users watched it). If row
#   $b$'s film is also the film of column $c \ne b$, that column is not a negative for user $b$: its
#   logit is set to a huge negative number, so it drops out of the softmax. The diagonal stays: it is
#   the positive.
#
# keras-rs (the Keras team's recommenders library) has a layer for each: `SamplingProbabilityCorrection`
# and `RemoveAccidentalHits`. Its newest release, 0.4.0, has a bug in the second: it adds
# `finfo(float32).smallest_normal / 100`, about $10^{-40}$, to an accidental hit's logit, which leaves it
# unchanged (keras-team/keras-rs#206). A model trained with it still counts its accidental hits as
# negatives, and nothing fails. The package uses keras-rs for the logQ correction and its own
# `remove_accidental_hits` for the second, with a test that notices when a keras-rs release fixes the
# layer. A library is a dependency to check, like your own code.
#
# ### Exercise 4.2: the in-batch corrections
#
# Write `correct_logits(logits, probability, item_ids)`. `logits` is the batch's `(B, B)` matrix
# (row $b$: user $b$; column $c$: the film of row $c$), `probability` the `(B,)` sampling probabilities
# of each row's film, `item_ids` the `(B,)` film ids. Return the `(B, B)` logits with the logQ
# correction applied and the accidental hits removed (any finite logit of $-10^6$ or less counts as
# removed; $-10^9$ is a good choice, $-\infty$ is not: the loss multiplies it by a zero label, which
# gives NaN). Use `keras.ops` (`ops.log`, `ops.expand_dims`, `ops.equal`, `ops.eye`, `ops.where`, ...)
# and `ops.shape(logits)[0]` for $B$: the function runs inside the two-tower's training graph, where
# the batch size is not known in advance. The check compares it with the package's on named batches,
# then the two-tower below trains with *your* function.

# %%
def correct_logits(logits, probability, item_ids):
    ### BEGIN SOLUTION
    logits = logits - ops.expand_dims(ops.log(probability), 0)  # column c's film
    same_film = ops.equal(ops.expand_dims(item_ids, 1), ops.expand_dims(item_ids, 0))
    off_diagonal = ops.logical_not(ops.cast(ops.eye(ops.shape(logits)[0]), "bool"))
    return ops.where(ops.logical_and(same_film, off_diagonal), -1e9, logits)
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop.labchecks import inbatch

selfcheck.check(
    "4.2",
    lambda: inbatch.check_corrections(correct_logits),
    hint="Two steps. The logQ correction belongs to the candidate, so column c loses log p of its own film "
    "(broadcast the (B,) vector along the last axis). Then an accidental hit is a cell off the diagonal whose "
    "column holds row b's film: compare every pair of ids, leave the diagonal alone, and give those cells a "
    "logit so negative that the softmax ignores them (0 is not enough).",
    code_hint="logits = logits - ops.expand_dims(ops.log(probability), 0)\n"
    "same_film = ops.equal(ops.expand_dims(item_ids, 1), ops.expand_dims(item_ids, 0))\n"
    "off_diagonal = ops.logical_not(ops.cast(ops.eye(ops.shape(logits)[0]), 'bool'))\n"
    "return ops.where(ops.logical_and(same_film, off_diagonal), -1e9, logits)",
)

# %% [markdown]
# Now the two-tower model, trained with your `correct_logits` swapped into the package's training
# graph (`mock.patch`, as lab 03's check did with the fusion layer; the package's stands in while
# Exercise 4.2 is not done). It is not loaded from a save: a saved model would not run your code. A
# bigger batch gives each positive more negatives, but fewer updates per epoch: on ml-100k a batch of 256 with a high learning rate works best (try others).

# %%
two_tower_config = TrainConfig(
    epochs=EPOCHS, batch_size=TWO_TOWER_BATCH_SIZE, learning_rate=TWO_TOWER_LEARNING_RATE, patience=PATIENCE, seed=SEED,
    verbose=2,
)
yours = selfcheck.yours_or("4.2", correct_logits, two_tower.correct_logits)  # the package's while 4.2 is not done
with mock.patch.object(two_tower, "correct_logits", yours):  # your corrections in the training graph
    retrieval_model = TwoTower(2 * N_FACTORS, items=items, temperature=0.1, seed=SEED)
    retrieval_model.fit(train, config=two_tower_config)
plot_learning_curves({"two-tower": retrieval_model}, heading="Two-tower: in-batch softmax cross-entropy")
evaluate(retrieval_model)[["model", "precision@10", "ndcg@10", "coverage", "popularity_bias"]].round(3)

# %% [markdown]
# ### Brute force or an approximate index?
#
# **Brute force** scores every film: one matrix product, $O(|I|\,d)$ per user, exact. An
# approximate nearest-neighbour index answers faster on a large catalogue by looking at only a small
# part of it. **HNSW** (hierarchical navigable small world graphs, Malkov & Yashunin 2018, here from
# faiss) links each vector to its nearest neighbours in a layered graph and searches it greedily from
# the top layer down, keeping the `efSearch` best candidates: roughly $O(\log |I|)$ per query, at the
# price of sometimes missing a true neighbour. We measure that with the **recall against brute
# force**, the share of the exact top-k the index also returns:
#
# $$\text{recall@}k = \frac{1}{|U|} \sum_u \frac{|\text{ANN}_k(u) \cap \text{exact}_k(u)|}{k}$$
#
# `retrieve` returns the raw nearest films (seen ones included): the *candidate generation* step of a
# two-stage recommender, whose candidates a heavier model (like the hybrid) then re-ranks.

# %%
import faiss


def latency_ms(index, queries: np.ndarray, n: int = 200) -> float:
    """Mean time of one search for one user (as a serving API answers a request), in milliseconds."""
    start = time.perf_counter()
    for row in queries[:n]:
        index.search(row[None, :], K)
    return 1000 * (time.perf_counter() - start) / min(n, len(queries))


def compare_search(item_vectors: np.ndarray, queries: np.ndarray, ef_values=(16, 64, 256)) -> pd.DataFrame:
    """Brute force against HNSW: recall@K against brute force, latency per user, index build time."""
    item_vectors = np.ascontiguousarray(item_vectors, dtype="float32")
    queries = np.ascontiguousarray(queries, dtype="float32")
    exact = faiss.IndexFlatIP(item_vectors.shape[1])  # brute force: every item is scored
    exact.add(item_vectors)
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(item_vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)  # as TwoTower.faiss_index
    hnsw.hnsw.efConstruction = 80
    hnsw.add(item_vectors)
    build_seconds = time.perf_counter() - start
    _, truth = exact.search(queries, K)
    rows = {"brute force": {f"recall@{K}": 1.0, "ms per user": latency_ms(exact, queries), "build s": 0.0}}
    for ef in ef_values:
        hnsw.hnsw.efSearch = ef
        _, found = hnsw.search(queries, K)
        rows[f"HNSW, efSearch={ef}"] = {
            f"recall@{K}": np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]),
            "ms per user": latency_ms(hnsw, queries),
            "build s": build_seconds,
        }
    return pd.DataFrame(rows).T


print(f"TwoTower.approximate_recall(k={K}, ef_search=16): {retrieval_model.approximate_recall(k=K, ef_search=16):.3f}")
compare_search(retrieval_model.item_vectors_, retrieval_model.user_vectors_).round(3)

# %% [markdown]
# (The package's `approximate_recall` and the table's first HNSW row measure the same thing; they can
# differ slightly when two films tie.) With 1,682 films, brute force takes well under a tenth of a
# millisecond per user: whatever an index saves here is negligible, and it costs recall. It pays off
# when the catalogue grows. The same comparison on a synthetic catalogue of `ANN_CATALOGUE_SIZE`
# films (noisy copies of the learned film vectors, so it keeps the clustered structure of a real
# catalogue):

# %%
rng = np.random.default_rng(SEED)
base = retrieval_model.item_vectors_[rng.integers(0, len(retrieval_model.item_vectors_), ANN_CATALOGUE_SIZE)]
synthetic = base + rng.normal(scale=0.5 / np.sqrt(base.shape[1]), size=base.shape)
synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
print(f"{len(synthetic):,} films")
compare_search(synthetic, retrieval_model.user_vectors_).round(3)

# %% [markdown]
# The trade-off to remember (the exact numbers depend on the machine and how busy it is): brute
# force grows linearly with the catalogue while an HNSW search barely grows, so at 100,000 films the
# index answers one to two orders of magnitude faster; `efSearch` buys recall with time (small values
# miss many true neighbours); and the index takes time to build, again after every retraining, since
# the item vectors change. (Brute force over *many* users at once is a matrix product, which BLAS does
# very well: an index is for answering one request at a time, fast.)
#
# ## 3. One interface, one comparison
#
# Lab 03's best pointwise models join the comparison: NeuMF and the hybrid's ranking head, with
# lab 03's settings (`LAB_03`). `saved.fit` loads them if lab 03 ran on this machine with the same data and
# code, and trains them otherwise, saying why (a few minutes at full size).

# %%
lab_03 = TrainConfig(epochs=EPOCHS, batch_size=LAB_03["batch_size"], learning_rate=LAB_03["learning_rate"],
                     patience=PATIENCE, seed=SEED, verbose=0)
neumf = saved.fit(NCF("neumf", N_FACTORS, LAB_03["mlp_layers"], n_negatives=LAB_03["n_negatives"], seed=SEED),
                  train, config=lab_03)
hybrid_ranking = saved.fit(
    HybridModel(users, items, task="ranking", n_factors=N_FACTORS, id_dropout=0.1, n_negatives=LAB_03["n_negatives"],
                seed=SEED),
    train, config=lab_03,
)

# %% [markdown]
# Whatever is inside, every model answers `recommend(user_ids, k, exclude_seen=True)` (and
# `score(user_ids, item_ids)`), so a serving layer can swap them freely. User 1's top 5 from each:

# %%
trained = {"most-popular": popular, "neumf": neumf, "hybrid-ranking": hybrid_ranking, **triplet_models,
           "two-tower": retrieval_model}
pd.DataFrame(
    {name: title[model.recommend([1], k=5).item_id].to_numpy() for name, model in trained.items()},
    index=pd.RangeIndex(1, 6, name="rank"),
).T

# %% [markdown]
# And all of them on the held-out split, with lab 02's two ranking baselines, "most popular" and
# item-kNN (lab 05 does the full comparison):

# %%
evaluate(neumf)
evaluate(hybrid_ranking)
evaluate(models.ItemKNN(n_neighbors=100).fit(train))
comparison = pd.concat(leaderboard.values(), ignore_index=True).set_index("model")
columns = ["precision@10", "recall@10", "ndcg@10", "coverage", "novelty", "popularity_bias", "epochs", "s/epoch"]
comparison = comparison[columns].sort_values("ndcg@10", ascending=False)

fig, ax = plt.subplots(figsize=(7, 3))
comparison["ndcg@10"].plot.barh(ax=ax, color="tab:blue")
ax.invert_yaxis()
ax.set(xlabel="NDCG@10 (held-out 25% of each film's ratings)", ylabel="")
plt.show()
comparison.round(3)

# %% [markdown]
# What the full-size table says: every deep model trained for ranking is far above "most popular",
# and the best of them (NeuMF, two-tower, the hybrid, BPR) are close to each other, while item-kNN, the
# neighbourhood method of lab 02, is still ahead of all of them on ml-100k. That is a known and sobering
# result (Dacrema et al., *Are we really making much progress?*, RecSys 2019): on small public data
# sets, well-tuned simple baselines often match neural recommenders. The deep models earn their place
# with what kNN cannot do: read metadata and score the new (lab 03), generate candidates from millions
# of items in a millisecond (section 2), and train everything through one function, on features of
# any kind. One split and one seed cannot rank models that are this close; lab 05 compares them
# properly.
#
# ## What you saw
# - A pairwise model asks which of two films the user prefers. The margin loss stops learning from
#   satisfied triplets; BPR keeps a smooth pressure and, with a dot product, ranks better. Popularity
#   negatives trade accuracy for less popular, more varied lists.
# - A two-tower model trained with an in-batch softmax, its logQ correction and its accidental hits
#   removed (your code, in the training graph), turns recommendation into a nearest-neighbour search:
#   exact by brute force, or approximate and much faster with HNSW on a large catalogue, at a recall
#   you can measure.
# - A library layer can be silently wrong (keras-rs' `RemoveAccidentalHits` changes nothing): check
#   it against the maths, as the self-checks check yours.
# - Every model shares `recommend` and `score`, and the classic item-kNN remains a baseline to respect.
#
# **Next:** lab 05, evaluation done properly: every model of labs 01-04 compared on the same data
# with the full set of metrics, and the splits that decide what a number means.
