"""recsys_workshop.data: download (against a real HTTP server on 127.0.0.1), parsing and splits."""

from __future__ import annotations

import hashlib
import http.server
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopback_http import serve

from recsys_workshop import data

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------------------------
# A real HTTP server on loopback that serves one archive in three ways
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def official_small_zip() -> bytes:
    """The genuine ml-latest-small.zip (from $MOVIELENS_DIR or the download cache), verified."""
    source = data._locate("ml-latest-small", progress=False)
    assert source.zip_path is not None, "the tests need the official ml-latest-small.zip in $MOVIELENS_DIR"
    return source.zip_path.read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    payload: bytes = b""
    mode = "good"

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path != "/datasets/movielens/ml-latest-small.zip":
            self.send_error(404)
            return
        body = self.payload
        if self.mode == "corrupt":
            body = body[:1000] + bytes([body[1000] ^ 0xFF]) + body[1001:]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        if self.mode == "drop":  # announce the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(official_small_zip):
    handler = type("Handler", (_Handler,), {"payload": official_small_zip, "mode": "good"})
    with serve(handler, "datasets/movielens/") as server:
        yield server


def test_download_good_zip_is_verified_and_loadable(http_server, isolated_cache):
    path = data.download("ml-latest-small", base_url=http_server.url, progress=False)
    assert path == isolated_cache / "ml-latest-small.zip"
    assert data._sha256_file(path) == data.DATASETS["ml-latest-small"].zip_sha256
    assert [p.name for p in isolated_cache.iterdir()] == ["ml-latest-small.zip"]
    # the loader now finds it in the cache, with no local copy configured
    ratings = data.load_ratings("ml-latest-small", progress=False)
    assert len(ratings) == 100836


def test_download_corrupted_zip_names_file_and_digests_and_leaves_nothing(http_server, isolated_cache):
    http_server.handler.mode = "corrupt"
    with pytest.raises(data.ChecksumError) as err:
        data.download("ml-latest-small", base_url=http_server.url, progress=False)
    message = str(err.value)
    assert "ml-latest-small.zip" in message
    assert data.DATASETS["ml-latest-small"].zip_sha256 in message
    assert "actual" in message and "Retry" in message
    assert list(isolated_cache.iterdir()) == []


def test_dropped_connection_leaves_no_partial_file(http_server, isolated_cache):
    http_server.handler.mode = "drop"
    with pytest.raises(data.DataUnavailableError):
        data.download("ml-latest-small", base_url=http_server.url, progress=False)
    assert list(isolated_cache.iterdir()) == []


def test_offline_error_names_the_local_copy_variable(isolated_cache):
    # a loopback port nobody listens on: the connection is refused, as on an offline machine
    with pytest.raises(data.DataUnavailableError, match="MOVIELENS_DIR"):
        data.download("ml-latest-small", base_url="http://127.0.0.1:9/", progress=False, timeout=2)
    assert list(isolated_cache.iterdir()) == []


def test_http_error_is_a_clear_error(http_server, isolated_cache):
    with pytest.raises(data.DataUnavailableError, match="404"):
        data.download("ml-latest-small", base_url=http_server.url + "missing/", progress=False)


def test_corrupted_cached_zip_says_what_to_do(isolated_cache, official_small_zip):
    isolated_cache.mkdir()
    (isolated_cache / "ml-latest-small.zip").write_bytes(official_small_zip[:-10] + b"0123456789")
    with pytest.raises(data.ChecksumError, match="Delete .*ml-latest-small.zip"):
        data.load_ratings("ml-latest-small", progress=False)


def test_edited_file_in_local_folder_is_refused(tmp_path, monkeypatch):
    source = data._locate("ml-100k", progress=False)
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for member in ("u.data", "u.item"):
        (folder / member).write_bytes(source.read(member))
    (folder / "u.data").write_bytes((folder / "u.data").read_bytes().replace(b"\t3\t", b"\t5\t", 1))
    monkeypatch.setenv("MOVIELENS_DIR", str(tmp_path))
    with pytest.raises(data.ChecksumError, match=r"ml-100k/u\.data"):
        data.load_ratings("ml-100k", progress=False)
    assert len(data.load_items("ml-100k", progress=False)) == 1682  # the untouched file still loads


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="ml-100k"):
        data.load_ratings("ml-20m")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def test_ml100k_tables(ml100k):
    ratings, items, users = ml100k.ratings, ml100k.items, ml100k.users
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ratings.dtypes.to_dict() == {
        "user_id": np.dtype("int64"),
        "item_id": np.dtype("int64"),
        "rating": np.dtype("float32"),
        "timestamp": np.dtype("int64"),
    }
    assert (len(ratings), ratings.user_id.nunique(), ratings.item_id.nunique()) == (100000, 943, 1682)
    assert ratings.rating.value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    # first line of u.data is "196\t242\t3\t881250949": columns are where their names say
    assert ratings.iloc[0].tolist() == [196, 242, 3.0, 881250949]

    toy_story = items.set_index("item_id").loc[1]
    assert toy_story.title == "Toy Story (1995)" and toy_story.year == 1995
    assert toy_story.genres == ["Animation", "Children's", "Comedy"]
    assert items.title.str.contains("é").any(), "u.item is latin-1: accented titles must survive"
    assert items.year.isna().sum() == 1  # item 267 "unknown" has no date
    assert len(users) == 943 and set(users.gender) == {"M", "F"}
    assert users.set_index("user_id").loc[1, "occupation"] == "technician"
    assert users.zip.map(type).eq(str).all()


def test_ml_latest_small_tables():
    ml = data.load("ml-latest-small", progress=False)
    assert (len(ml.ratings), ml.ratings.user_id.nunique()) == (100836, 610)
    assert set(np.unique(ml.ratings.rating)) == set(np.arange(0.5, 5.01, 0.5))
    assert len(ml.items) == 9742 and set(ml.ratings.item_id) <= set(ml.items.item_id)
    assert ml.items.set_index("item_id").loc[1, "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert [] in ml.items.genres.tolist()  # "(no genres listed)" becomes an empty list
    assert len(ml.tags) == 3683 and ml.users is None
    with pytest.raises(ValueError, match="demographics"):
        data.load_users("ml-latest-small")


def test_summary_density(ml100k):
    assert ml100k.summary()["density"] == pytest.approx(100000 / (943 * 1682))


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


# sha256 of the train and test CSVs (header user_id,item_id,rating,timestamp, raw ids, ratings as float64,
# rows in the split's order) of ml-100k's u.data read in file order and split by Microsoft Recommenders'
# python_stratified_split(df, ratio=0.75, min_rating=1, filter_by="item", seed=42): their benchmark split.
MSR_SPLIT_SHA256 = {
    # recommenders 1.2.0 onwards (published digests of 1.2.1's output)
    "current": (
        "b5cb3baa687b64c49194263ab5b47583eea50f04ac3f9d4a028a5fa6cae1fd2a",
        "aa36fd6bc3da0cc9bc0780057490711993b76b6ff9ff5ac0656170e7867784c2",
    ),
    # recommenders up to 1.1.1 (its per-group group.sample shuffle), from that release's source run as is
    "group-sample": (
        "4621203c901d3327df8bf6897955e47cddcfa45c30632609d26deb468f34fade",
        "cf240f08bfde340df06ce5d6175173525d22ea7af706ea399fd11438935430e2",
    ),
}


def _csv_sha256(part: pd.DataFrame) -> str:
    return hashlib.sha256(part.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


def test_stratified_split_is_microsoft_recommenders_benchmark_split(ml100k_ratings):
    ratings = ml100k_ratings.astype({"rating": "float64"})
    train, test = data.stratified_split(ratings, 0.75, min_rating=1, filter_by="item", seed=42)
    assert (len(train), len(test)) == (75066, 24934)
    assert list(train.columns) == list(ratings.columns) and train.dtypes.equals(ratings.dtypes)
    assert (_csv_sha256(train), _csv_sha256(test)) == MSR_SPLIT_SHA256["current"]
    assert list(ml100k_ratings.columns) == ["user_id", "item_id", "rating", "timestamp"], "the input is untouched"


def test_group_sample_split_is_the_pre_1_2_benchmark_split(ml100k_ratings):
    ratings = ml100k_ratings.astype({"rating": "float64"})
    train, test = data.stratified_split_group_sample(ratings, 0.75, filter_by="item", seed=42)
    assert (_csv_sha256(train), _csv_sha256(test)) == MSR_SPLIT_SHA256["group-sample"]
    current, _ = data.stratified_split(ratings, 0.75, filter_by="item", seed=42)
    assert (train.groupby("item_id").size() == current.groupby("item_id").size()).all()


def test_stratified_split_multiple_ratios_and_min_rating(ml100k_ratings):
    parts = data.stratified_split(ml100k_ratings, [0.6, 0.2, 0.2], min_rating=20, filter_by="user", seed=1)
    counts = ml100k_ratings.groupby("user_id").size()
    counts = counts[counts >= 20]
    sizes = [part.groupby("user_id").size().reindex(counts.index, fill_value=0) for part in parts]
    first, second = np.round(0.6 * counts), np.round(0.8 * counts)
    assert (sizes[0] == first).all() and (sizes[1] == second - first).all() and (sizes[2] == counts - second).all()
    union = pd.concat(parts)
    assert union.index.is_unique and set(union.user_id) == set(counts.index)


def test_stratified_split_per_user_properties(ml100k_ratings):
    train, test = data.stratified_split(ml100k_ratings, 0.75, filter_by="user", seed=7)
    assert len(train) + len(test) == len(ml100k_ratings)
    assert train.index.intersection(test.index).empty
    assert set(test.user_id) <= set(train.user_id), "every test user has training history"
    counts = ml100k_ratings.groupby("user_id").size()
    assert (train.groupby("user_id").size() == np.round(0.75 * counts).astype(int)).all()
    again, _ = data.stratified_split(ml100k_ratings, 0.75, filter_by="user", seed=7)
    other, _ = data.stratified_split(ml100k_ratings, 0.75, filter_by="user", seed=8)
    assert train.index.equals(again.index) and not train.index.equals(other.index)


def test_stratified_split_rejects_bad_arguments(ml100k_ratings):
    with pytest.raises(ValueError, match="filter_by"):
        data.stratified_split(ml100k_ratings, filter_by="movie")
    with pytest.raises(ValueError, match="ratio"):
        data.stratified_split(ml100k_ratings, 1.5)
    with pytest.raises(ValueError, match="item_id"):
        data.stratified_split(ml100k_ratings.drop(columns="item_id"))


def test_random_split_three_way(ml100k_ratings):
    train, valid, test = data.random_split(ml100k_ratings, [0.64, 0.16, 0.2], seed=0)
    assert (len(train), len(valid), len(test)) == (64000, 16000, 20000)
    union = pd.concat([train, valid, test])
    assert union.index.is_unique and len(union) == len(ml100k_ratings)
    again = data.random_split(ml100k_ratings, [0.64, 0.16, 0.2], seed=0)[2]
    assert test.index.equals(again.index)


def test_chrono_split_keeps_each_users_past_in_train(ml100k_ratings):
    train, test = data.chrono_split(ml100k_ratings, 0.8)
    last_train = train.groupby("user_id").timestamp.max()
    first_test = test.groupby("user_id").timestamp.min()
    assert (last_train.loc[first_test.index] <= first_test).all()
    assert len(train) + len(test) == len(ml100k_ratings)


def test_global_time_split_trains_on_nothing_after_the_cut(ml100k_ratings):
    train, test = data.global_time_split(ml100k_ratings, 0.8)
    assert train.timestamp.max() < test.timestamp.min(), "one cut-off for every user"
    assert 0.78 < len(train) / len(ml100k_ratings) < 0.82
    assert test.user_id.isin(train.user_id).all() and test.item_id.isin(train.item_id).all()
    everything = data.global_time_split(ml100k_ratings, 0.8, known_only=False)[1]
    assert len(train) + len(everything) == len(ml100k_ratings) and len(everything) > len(test)
    # the per-user chronological split does train on ratings made after some test ratings
    chrono_train, chrono_test = data.chrono_split(ml100k_ratings, 0.8)
    assert chrono_train.timestamp.max() > chrono_test.timestamp.min()
    with pytest.raises(ValueError, match="ratio"):
        data.global_time_split(ml100k_ratings, 1.0)


def test_leave_one_out_protocol(ml100k_ratings):
    split = data.leave_one_out_split(ml100k_ratings, n_negatives=99, seed=1)
    assert len(split.test) == 943 and split.test.user_id.is_unique
    assert len(split.train) == len(ml100k_ratings) - 943
    latest = ml100k_ratings.groupby("user_id").timestamp.max()
    assert (split.test.set_index("user_id").timestamp == latest.loc[split.test.user_id]).all()
    assert (split.negatives.groupby("user_id").size() == 99).all()
    assert not split.negatives.duplicated().any()
    seen = ml100k_ratings[["user_id", "item_id"]].merge(split.negatives, on=["user_id", "item_id"])
    assert seen.empty, "a negative must be an item the user never interacted with"
    leak = split.train.merge(split.test, on=["user_id", "item_id"])
    assert leak.empty
    candidates = split.candidates()
    assert len(candidates) == 943 * 100 and candidates.label.sum() == 943
    same = data.leave_one_out_split(ml100k_ratings, n_negatives=99, seed=1)
    pd.testing.assert_frame_equal(split.negatives, same.negatives)


def test_official_splits():
    train, test = data.official_split("ua", progress=False)
    assert (len(train), len(test)) == (90570, 9430)
    assert (test.groupby("user_id").size() == 10).all()
    assert train.merge(test, on=["user_id", "item_id"]).empty
    for fold in ("u1", "u5"):
        base, held_out = data.official_split(fold, progress=False)
        assert (len(base), len(held_out)) == (80000, 20000)
    with pytest.raises(ValueError, match="ua"):
        data.official_split("u9")


def test_to_implicit():
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [5.0, 3.0, 4.0], "timestamp": [0, 1, 2]})
    implicit = data.to_implicit(df, threshold=4)
    assert implicit[["user_id", "item_id"]].values.tolist() == [[1, 1], [2, 1]]
    assert "rating" not in implicit


def test_data_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, recsys_workshop.data, recsys_workshop; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_local_copy_is_never_written(tmp_path, monkeypatch):
    source = data._locate("ml-100k", progress=False)
    if source.folder is None:
        pytest.fail("this test needs MOVIELENS_DIR pointing at a folder copy")
    copy = tmp_path / "ro"
    shutil.copytree(source.folder, copy / "ml-100k")
    before = sorted(p.name for p in (copy / "ml-100k").iterdir())
    monkeypatch.setenv("MOVIELENS_DIR", str(copy))
    data.load("ml-100k", progress=False)
    data.official_split("ub", progress=False)
    assert sorted(p.name for p in (copy / "ml-100k").iterdir()) == before
    assert Path(copy).exists()


def test_an_empty_local_copy_folder_gets_one_clear_message(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("MOVIELENS_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataUnavailableError) as err:
        data.download("ml-latest-small", base_url="http://127.0.0.1:9/", progress=False, timeout=2)
    message = str(err.value)
    assert f"MOVIELENS_DIR={tmp_path / 'empty'} holds none of ml-latest-small.zip" in message
    assert "set MOVIELENS_DIR" not in message, "do not advise setting a variable that is already set"
