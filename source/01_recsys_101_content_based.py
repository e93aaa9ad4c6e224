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
# # Lab 01: what a recommender is, and content-based filtering
#
# **Time:** about 40 minutes.
#
# > **Before you start**
# > - **You need:** lab 00 (the data is downloaded and verified).
# > - **A cluster:** no: everything runs on this machine, in local mode.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** none: it runs on your machine or your hub server.
#
# **You will**
# - see what a recommender is for: relevance, and what lies beyond accuracy (novelty, serendipity,
#   diversity), and how these serve a business objective;
# - build a content-based recommender on MovieLens: film profiles from genres and user tags with
#   TF-IDF, a user profile from the films the user rated highly, cosine similarity, top-k lists that
#   leave out what the user has already seen, and an explanation for every recommendation;
# - measure its strengths and weaknesses: it recommends a brand-new film that nobody has rated yet,
#   and it keeps users inside the tastes they already have.
#
# ## What is a recommender for?
#
# A recommender chooses, for one person at one moment, a short list out of a catalogue far too large
# to browse. "Good" has several meanings:
#
# - **Relevance**: the person likes what is shown (accuracy metrics: precision, recall, NDCG).
# - **Novelty**: the person did not know it already (recommending *The Godfather* to a film lover
#   is accurate and useless).
# - **Serendipity**: relevant *and* unexpected: a pleasant surprise the person would not have found.
# - **Diversity**: the list is not ten variations of one thing.
# - **Coverage**: the whole catalogue gets a chance, not only the head of the long tail.
#
# The business objective decides the weights: a streaming service wants long-term engagement and
# retention (novelty and diversity matter), a shop wants conversions now (relevance first), a
# marketplace wants every seller to sell (coverage). This lab and lab 05 measure all of them.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"
DATASET = "ml-latest-small"  # has user tags, which content-based filtering uses
K = 10  # length of a recommendation list
LIKE_THRESHOLD = 4.0  # a rating >= this means "liked"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from recsys_workshop import data, metrics, models, selfcheck
from recsys_workshop.models.classic import item_feature_tokens, tfidf_item_features

movielens = data.load(DATASET)
ratings, items, tags = movielens.ratings, movielens.items, movielens.tags
print(f"{len(ratings):,} ratings, {len(items):,} films, {len(tags):,} tags")
tags.sample(5, random_state=0)

# %% [markdown]
# ## 1. Describing films: TF-IDF over genres and tags
#
# Each film becomes a list of tokens: its genres (`genre:Comedy`) and the tags users gave it
# (`tag:dark comedy`). TF-IDF turns the lists into vectors: a token's weight grows with how often it
# describes the film (term frequency) and shrinks with how many films share it (inverse document
# frequency), so `genre:Drama`, which half the catalogue has, counts for less than `tag:time travel`.
# Each vector is normalised to length 1.

# %%
tokens = item_feature_tokens(items, tags)
item_features, feature_names = tfidf_item_features(tokens)
item_ids = tokens.index.to_numpy()
print(f"{item_features.shape[0]:,} films x {item_features.shape[1]:,} features, "
      f"{item_features.nnz / item_features.shape[0]:.1f} non-zero features per film")


def describe(item_id: int, n: int = 6) -> pd.Series:
    """The heaviest TF-IDF features of one film."""
    row = item_features[int(np.searchsorted(item_ids, item_id))].toarray().ravel()
    top = np.argsort(-row)[:n]
    return pd.Series(row[top], index=feature_names[top]).round(3)


title = items.set_index("item_id")["title"]
print(title[2571])  # The Matrix
describe(2571)

# %% [markdown]
# ### Exercise 1.1: the user profile
#
# A user's profile is the **rating-weighted sum** of the feature vectors of the films they rated at
# least `like_threshold`, normalised to length 1:
#
# $$\text{profile}(u) = \frac{\sum_{i:\, r_{ui} \ge t} r_{ui}\, x_i}{\lVert \sum_{i:\, r_{ui} \ge t} r_{ui}\, x_i \rVert}$$
#
# Write `build_profile(user_ratings, item_features, item_ids, like_threshold)`. `user_ratings` holds
# one user's rows of `ratings`; row `j` of `item_features` (a SciPy sparse matrix) describes the film
# `item_ids[j]`. Return a 1-D NumPy array of length `item_features.shape[1]`; a user who liked nothing
# gets all zeros.

# %%
def build_profile(user_ratings: pd.DataFrame, item_features, item_ids: np.ndarray, like_threshold: float) -> np.ndarray:
    ### BEGIN SOLUTION
    liked = user_ratings[user_ratings["rating"] >= like_threshold]
    rows = np.searchsorted(item_ids, liked["item_id"].to_numpy())
    weights = liked["rating"].to_numpy(dtype=float)
    profile = np.asarray(item_features[rows].T @ weights).ravel()
    norm = np.linalg.norm(profile)
    return profile / norm if norm > 0 else profile
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop import labchecks

selfcheck.check(
    "1.1",
    lambda: labchecks.build_profile(build_profile, ratings, item_features, item_ids, LIKE_THRESHOLD),
    hint="Only the liked films count; each adds its feature vector times its rating; the sum is then "
    "scaled to length 1 (unless it is all zeros).",
    code_hint="liked = rows with rating >= like_threshold; rows = np.searchsorted(item_ids, liked item ids); "
    "profile = np.asarray(item_features[rows].T @ liked ratings).ravel(); divide by np.linalg.norm(profile) if > 0.",
)

# %% [markdown]
# What does user 68 like? Their profile's heaviest features:

# %%
from recsys_workshop.models.classic import user_profiles


def _package_profile(user_ratings, item_features, item_ids, like_threshold):
    return user_profiles(user_ratings, item_features, item_ids, like_threshold)[1][0]


profile_68 = selfcheck.yours_or("1.1", build_profile, _package_profile)(
    ratings[ratings.user_id == 68], item_features, item_ids, LIKE_THRESHOLD
)
pd.Series(profile_68, index=feature_names).nlargest(8).round(3)

# %% [markdown]
# ### Exercise 1.2: the similarity scorer
#
# Score every film by the **cosine similarity** between the user's profile and the film's vector:
#
# $$\cos(p, x_i) = \frac{p \cdot x_i}{\lVert p \rVert\, \lVert x_i \rVert}$$
#
# Write `similarity_scores(profile, item_features)` returning one score per film (a 1-D array of
# length `item_features.shape[0]`). Guard against zero vectors: their similarity is 0.

# %%
def similarity_scores(profile: np.ndarray, item_features) -> np.ndarray:
    ### BEGIN SOLUTION
    dots = np.asarray(item_features @ profile).ravel()
    item_norms = np.sqrt(np.asarray(item_features.multiply(item_features).sum(axis=1)).ravel())
    norms = item_norms * np.linalg.norm(profile)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "1.2",
    lambda: labchecks.similarity_scores(similarity_scores, profile_68, item_features),
    hint="A cosine is a dot product divided by both lengths, so scaling the profile changes nothing; "
    "a zero vector has no direction: give it 0, not a division by zero.",
    code_hint="dots = np.asarray(item_features @ profile).ravel(); item norms: "
    "np.sqrt(item_features.multiply(item_features).sum(axis=1)); "
    "np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0).",
)

# %% [markdown]
# ## 2. Recommending: top-k, without what the user has seen
#
# Rank all films by similarity, drop those the user has already rated, keep the first `K`.
# The package's `models.ContentBased` does exactly this for many users at once (and explains itself);
# the next cell checks that your two functions give the same list.

# %%
from sklearn.metrics.pairwise import cosine_similarity

seen_68 = set(ratings.loc[ratings.user_id == 68, "item_id"])
scores_68 = selfcheck.yours_or(
    "1.2", similarity_scores, lambda p, x: cosine_similarity(p.reshape(1, -1), x).ravel()
)(profile_68, item_features)
order = [i for i in np.argsort(-scores_68, kind="stable") if item_ids[i] not in seen_68][:K]
yours = item_ids[order]

model = models.ContentBased(items, tags, like_threshold=LIKE_THRESHOLD).fit(ratings)
recs_68 = model.recommend([68], k=K)
print("same list as the package:", list(yours) == recs_68.item_id.tolist())
recs_68.assign(
    title=recs_68.item_id.map(title),
    because=[", ".join(model.explain(68, i)) for i in recs_68.item_id],
)

# %% [markdown]
# Every recommendation comes with its reason: the features of the user's profile that the film
# shares. Explanations are a real strength of content-based filtering: users trust what they understand.
#
# ## 3. Strength: a brand-new film
#
# A film added this morning has no ratings, so nothing that learns from ratings can recommend it. A
# content-based recommender only needs its description. We add a new film described by the six
# features user 68's profile weighs most, refit, and look for it in their list.

# %%
new_id = int(items.item_id.max()) + 1
described_by = pd.Series(profile_68, index=feature_names).nlargest(6).index
new_film = pd.DataFrame({
    "item_id": [new_id], "title": ["A Brand-New Film (2026)"], "year": [2026],
    "genres": [[f.split(":", 1)[1] for f in described_by if f.startswith("genre:")]],
})
new_tags = pd.DataFrame({"user_id": 0, "item_id": new_id, "timestamp": 0,
                         "tag": [f.split(":", 1)[1] for f in described_by if f.startswith("tag:")]})
catalogue = pd.concat([items, new_film], ignore_index=True)

fresh = models.ContentBased(catalogue, pd.concat([tags, new_tags]), like_threshold=LIKE_THRESHOLD).fit(ratings)
fresh_recs = fresh.recommend([68], k=K)
print(f"new film {new_id}: {list(described_by)}, {int((ratings.item_id == new_id).sum())} ratings")
print(f"its rank in user 68's top {K}: {fresh_recs.set_index('item_id')['rank'].get(new_id, 'not in the list')}")

# %% [markdown]
# ## 4. Weakness: more of the same
#
# The profile is built from what the user already likes, so the recommendations resemble it. We hold
# out 25% of each user's ratings, recommend 10 films to everyone, and compare with the simplest
# collaborative baseline, "most popular". **Intra-list diversity** is 1 minus the mean cosine
# similarity of the genres of the films in a list (0: all alike).

# %%
train, test = data.stratified_split(ratings, 0.75, filter_by="user", seed=42)
genres = data.genre_matrix(items)
comparison = pd.concat(
    [
        metrics.evaluate(models.ContentBased(items, tags).fit(train), train, test, K, item_features=genres),
        metrics.evaluate(models.MostPopular().fit(train), train, test, K, item_features=genres),
    ],
    ignore_index=True,
).set_index("model")
comparison[["precision@10", "ndcg@10", "coverage", "novelty", "diversity", "popularity_bias"]].round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, column in zip(axes, ["ndcg@10", "diversity", "novelty"]):
    comparison[column].plot.bar(ax=ax, color=["tab:purple", "tab:grey"], rot=0)
    ax.set(title=column, xlabel="")
plt.tight_layout()
plt.show()

# %% [markdown]
# What the numbers say:
#
# - **Diversity**: content-based lists are far less diverse than the popular list: they stay inside
#   the user's known tastes (the *filter bubble*).
# - **Novelty and coverage**: content-based recommends from the whole catalogue, long tail included,
#   whereas "most popular" shows everyone the same few films.
# - **Accuracy**: on held-out ratings content-based is *less* accurate than "most popular": tags and
#   genres say little about quality, and popularity is a strong signal in MovieLens. Collaborative
#   filtering (lab 02) learns from what people do rather than what films are.
#
# | content-based | pros | cons |
# |---|---|---|
# | | new items from day one; explainable; no other users needed; niche tastes | needs good metadata; over-specialises; new *users* still cold; no sense of quality |
#
# **Next:** lab 02, collaborative filtering and matrix factorisation.
