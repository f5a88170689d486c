import pytest

from distill.augment import AugmentConfig, augment, load_embedder, pairs_of, write_dataset
from distill.data.records import load_json
from distill.data.stories import story_of
from distill.ingest import DataConfig, load_data


@pytest.fixture(scope="module")
def splits(sample_dir):
    data = load_data(
        DataConfig(
            train=[str(sample_dir / "image2text_train.json"), str(sample_dir / "text2image_train.json")],
            dev=[str(sample_dir / "image2text_dev.json"), str(sample_dir / "text2image_dev.json")],
            validation_fraction=0.25,
        )
    )
    return data.splits


@pytest.fixture(scope="module")
def augmented(splits):
    everything = splits["train"] + splits["val"] + splits["dev"]
    return augment(everything, AugmentConfig(permutations=2, option_counts=[3, 4, 5], seed=1), progress=False)


def test_permuted_items_keep_the_gold_content(splits, augmented):
    new, _ = augmented
    by_key = {it.key: it for it in splits["train"]}
    perms = [it for it in new if it.transform.startswith("permute")]
    assert perms
    for it in perms:
        parent = by_key[it.parents[0]]
        assert (it.gold_option.text, it.gold_option.image) == (parent.gold_option.text, parent.gold_option.image)
        assert sorted(o.image or o.text for o in it.options) == sorted(o.image or o.text for o in parent.options)


def test_recombined_items_answer_with_their_own_pair_from_the_train_pool(splits, augmented):
    new, report = augmented
    train = splits["train"]
    pairs = {p.source.key: p for p in pairs_of(train)}
    recs = [it for it in new if it.transform.startswith("recombine")]
    assert {it.task for it in recs} == {"image2text", "text2image"}
    assert {len(it.options) for it in recs} <= {3, 4, 5} and len({len(it.options) for it in recs}) > 1
    for it in recs:
        own = pairs[it.parents[it.letters.index(it.gold)]]
        if it.task == "image2text":
            assert it.images == [own.cover] and it.gold_option.text == own.story
            contents = [o.text for o in it.options]
        else:
            assert it.gold_option.image == own.cover and own.story in it.input
            contents = [o.image for o in it.options]
        assert len(set(contents)) == len(contents)  # no duplicate options
        assert set(it.parents) <= set(pairs)
    assert 0 < report.as_dict()["mean_distractor_similarity"] <= 1


def test_no_validation_or_dev_item_is_a_parent_or_a_distractor(splits, augmented):
    new, _ = augmented
    held_out = splits["val"] + splits["dev"]
    held_ids = {it.key for it in held_out}
    held_content = {o.image or o.text for it in held_out for o in [it.gold_option]}
    train_content = {o.image or o.text for it in splits["train"] for o in it.options} | {
        p for it in splits["train"] for p in it.images
    }
    held_only = held_content - train_content  # gold covers/stories that appear nowhere in train
    for it in new:
        assert not set(it.parents) & held_ids
        assert not {o.image or o.text for o in it.options} & held_only


def test_gold_letters_are_balanced_and_runs_are_deterministic(splits, augmented):
    new, report = augmented
    hist = report.gold_letters
    perms = [it for it in new if it.transform.startswith("permute")]
    counts = [sum(it.gold == L for it in perms) for L in "ABCD"]
    assert max(counts) - min(counts) <= 2
    again, _ = augment(splits["train"], AugmentConfig(permutations=2, option_counts=[3, 4, 5], seed=1), progress=False)
    assert [it.model_dump() for it in again] == [it.model_dump() for it in new]
    assert sum(hist.values()) == len(new)


def test_output_loads_as_task_files(augmented, tmp_path):
    new, report = augmented
    paths = write_dataset(new, tmp_path, report)
    for task, path in paths.items():
        loaded = load_json(path, task)
        assert len(loaded.items) == sum(it.task == task for it in new)
        assert [it.gold for it in loaded.items] == [it.gold for it in new if it.task == task]


def test_story_extraction_on_the_sample_wording(sample_dir):
    for it in load_json(sample_dir / "text2image_dev.json").items:
        story = story_of(it)
        question, told = it.input.split("\n")[:2]
        assert story == told and "?" not in story and story.endswith(".")


def test_embedder_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = load_embedder(None).encode(
        ["crimson hexagons in a lattice", "crimson hexagons tiled regularly", "cobalt circles scattered"],
        normalize_embeddings=True,
    )
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_items_from_macs_csvs_carry_each_story_once(sample_dir, tmp_path):
    from tests.mac_layout import write_mac_csvs

    paths = write_mac_csvs(sample_dir, tmp_path)
    data = load_data(DataConfig(train=[str(p) for p in paths.values()], validation_fraction=0))
    stories = [story_of(it) for it in data.splits["train"] if it.task == "text2image"]
    new, _ = augment(data.splits["train"], AugmentConfig(permutations=1, seed=0), progress=False)
    assert {it.transform.split(":")[0] for it in new} == {"permute", "recombine"}
    for it in new:  # the question text holds the story (text2image) or the stories (image2text) as options
        text = " ".join(it.input.split())
        for story in stories:
            assert text.count(" ".join(story.split())) <= 1, (it.transform, it.input)
