"""Stage 2: the thesis split is reproduced exactly and deterministically; the record split
shares no record; outputs are complete folders."""
import csv

from sklearn.model_selection import train_test_split

from conftest import run_main
from ecg import split
from helpers import fake_scalograms


def read_split(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_random_split_is_the_thesis_split(tmp_path):
    root = fake_scalograms(tmp_path / "scalogram")
    items = split.list_images(root)
    assignment = split.split_random(items, 0.2, 4)
    # the thesis method (docs/design.md): sorted files, sklearn twice with random_state=4
    paths = [p for p, _, _ in items]
    labels = [c for _, c, _ in items]
    tr, rest, _, rest_y = train_test_split(paths, labels, test_size=0.2, stratify=labels, random_state=4)
    va, te = train_test_split(rest, test_size=0.5, stratify=rest_y, random_state=4)
    expected = {**{p: "train" for p in tr}, **{p: "val" for p in va}, **{p: "test" for p in te}}
    assert dict(zip(paths, assignment)) == expected


def assert_folders_match_split_csv(work, n_images):
    """Each split folder holds exactly its split.csv rows, no image twice, every image once."""
    rows = read_split(work / "data" / "split.csv")
    assert len(rows) == n_images
    seen = set()
    for s in ("train", "val", "test"):
        folder = work / "data" / f"{s}_images"
        names = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
        assert names == {r["path"] for r in rows if r["split"] == s}
        assert not seen & names
        seen |= names
    assert len(seen) == n_images
    return rows


def test_split_script_is_deterministic_and_complete(tmp_path):
    fake_scalograms(tmp_path / "data" / "scalogram")
    run_main("2_train_test_valid_split.py", "--workdir", tmp_path)
    first = (tmp_path / "data" / "split.csv").read_text()
    run_main("2_train_test_valid_split.py", "--workdir", tmp_path)
    assert (tmp_path / "data" / "split.csv").read_text() == first
    rows = assert_folders_match_split_csv(tmp_path, 100)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == {"train": 80, "val": 10, "test": 10}
    train_png = next((tmp_path / "data" / "train_images").rglob("*.png"))
    src = tmp_path / "data" / "scalogram" / train_png.parent.name / train_png.name
    assert train_png.stat().st_ino == src.stat().st_ino  # a hard link, not a copy


def test_record_split_shares_no_record(tmp_path):
    root = fake_scalograms(tmp_path / "data" / "scalogram",
                           records=("100", "101", "102", "103", "104", "105", "106", "107"))
    proc = run_main("2_train_test_valid_split.py", "--workdir", tmp_path, "--by", "record")
    assert "records shared by train and test: 0" in proc.stdout
    rows = assert_folders_match_split_csv(tmp_path, 100)
    by_split = {s: {r["record"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["test"] or by_split["train"] & by_split["val"]
                or by_split["val"] & by_split["test"])
    for s in ("train", "val", "test"):  # the records in each folder's file names are its split's
        folder = tmp_path / "data" / f"{s}_images"
        assert {p.name.split("_")[0] for p in folder.rglob("*.png")} == by_split[s]
    assert len(list(root.rglob("*.png"))) == 100  # the scalograms themselves stay in place


def test_record_split_with_fixed_test_records():
    items = [(f"N/{r}_N_{i}.png", "N", r) for r in ("1", "2", "3", "4", "5") for i in range(3)]
    a = split.split_by_record(items, 4, test_records=["4", "5"], train_records=["1", "2", "3"])
    recs = {s: {it[2] for it, x in zip(items, a) if x == s} for s in set(a)}
    assert recs["test"] == {"4", "5"} and len(recs["val"]) == 1 and recs["val"] | recs["train"] == {"1", "2", "3"}


def test_missing_scalograms_is_a_clear_error(tmp_path):
    proc = run_main("2_train_test_valid_split.py", "--workdir", tmp_path, check=False)
    assert proc.returncode == 2 and "scalogram folder not found" in proc.stderr


def test_record_split_shares_are_near_the_targets():
    # 20 records of 100 N beats, 10 of them also holding 50 V: 80/10/10 is reachable for both
    items = [(f"N/{r}_N_{i}.png", "N", f"{r:03d}") for r in range(20) for i in range(100)]
    items += [(f"V/{r}_V_{i}.png", "V", f"{r:03d}") for r in range(0, 20, 2) for i in range(50)]
    a = split.split_by_record(items, 4)
    assert a == split.split_by_record(items, 4)  # seeded: the same input gives the same split
    for cls in ("N", "V"):
        share = {s: sum(x == s for it, x in zip(items, a) if it[1] == cls) / sum(it[1] == cls for it in items)
                 for s in ("train", "val", "test")}
        assert all(abs(share[s] - t) < 1e-9 for s, t in (("train", 0.8), ("val", 0.1), ("test", 0.1))), (cls, share)
    recs = {s: {it[2] for it, x in zip(items, a) if x == s} for s in ("train", "val", "test")}
    assert not (recs["train"] & recs["test"] or recs["train"] & recs["val"] or recs["val"] & recs["test"])
