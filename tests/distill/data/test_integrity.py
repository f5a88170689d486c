"""What used to go wrong silently on real users' data: registry splits, gold-less training records, loose split
rules, stories on one line with the question, ids shared across tasks."""

import json
import shutil

import pytest

from distill.data.filenames import split_of, task_of
from distill.data.items import Item, Option
from distill.data.options import parse_options
from distill.data.records import DataError, load_json
from distill.data.registry import load_registry
from distill.data.stories import StoryError, story_of
from distill.errors import UserError
from distill.ingest import DataConfig, load_data

TASK_COLUMNS = {"prompt": "system", "query": "input", "response": "output", "images": "images"}


def test_a_registry_keeps_each_datasets_split(sample_dir):
    items = load_registry(sample_dir / "dataset_info.json").items
    by_split = {s: {it.task for it in items if it.split == s} for s in ("train", "dev", "test")}
    assert by_split == {s: {"image2text", "text2image"} for s in ("train", "dev", "test")}
    data = load_data(DataConfig(train=[str(sample_dir / "dataset_info.json")], validation_fraction=0.2))
    assert len(data.splits["test"]) == 16 and all(it.gold is None for it in data.splits["test"])
    assert not [it for it in data.splits["train"] + data.splits["val"] if it.split not in ("train", "val")]
    assert {it.key for it in data.splits["train"]}.isdisjoint(it.key for it in data.splits["test"] + data.splits["dev"])


def test_a_registry_dataset_without_a_split_is_named(tmp_path, sample_dir):
    shutil.copy(sample_dir / "image2text_dev.json", tmp_path / "covers.json")
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"mac_covers": {"file_name": "covers.json", "columns": TASK_COLUMNS}})
    )
    with pytest.raises(DataError, match=r"dataset_info.json id=mac_covers \[split\]: cannot tell the split"):
        load_registry(tmp_path / "dataset_info.json", check_images=False)


@pytest.mark.parametrize("gold", [None, ""])
def test_training_records_need_a_gold_letter(tmp_path, sample_dir, gold):
    recs = json.loads((sample_dir / "image2text_dev.json").read_text())
    for r in recs:
        r["images"] = [str(sample_dir / p) for p in r["images"]]
    recs[1]["output"] = gold
    (tmp_path / "image2text_train.json").write_text(json.dumps(recs))
    with pytest.raises(DataError) as err:
        load_json(tmp_path / "image2text_train.json")
    [e] = err.value.errors
    assert (e.index, e.id, e.field) == (1, recs[1]["id"], "output") and "needs a gold letter" in e.message
    assert len(load_json(tmp_path / "image2text_train.json", skip_invalid=True).items) == len(recs) - 1
    (tmp_path / "image2text_test.json").write_text(json.dumps(recs))  # test records may lack it
    assert len(load_json(tmp_path / "image2text_test.json").items) == len(recs)


@pytest.mark.parametrize(
    "name,split,task",
    [
        ("latest_train.json", "train", None),
        ("image2text_test.json", "test", "image2text"),
        ("contest.json", None, None),
        ("text2image-dev.json", "dev", "text2image"),
        ("MAC_Val.json", "val", None),
        ("image2text_train_aug.json", "train", "image2text"),
        ("trainee_notes.json", None, None),
    ],
)
def test_one_word_boundary_rule_for_names(name, split, task):
    assert (split_of(name), task_of(name)) == (split, task)


def test_distill_load_uses_the_same_rule(tmp_path, sample_dir):
    from distill.pipeline import load_files

    shutil.copy(sample_dir / "image2text_train.json", tmp_path / "latest_train.json")
    for p in (sample_dir / "images").iterdir():
        (tmp_path / "images").mkdir(exist_ok=True)
        shutil.copy(p, tmp_path / "images" / p.name)
    data = load_files([tmp_path / "latest_train.json"], tmp_path / "s.db", validation_fraction=0.25)
    assert set(data.counts()) == {"train", "val"}  # not test, as a substring rule had it
    shutil.copy(tmp_path / "latest_train.json", tmp_path / "contest.json")
    with pytest.raises(UserError, match="pass --split"):
        load_files([tmp_path / "contest.json"], tmp_path / "s2.db")


STORY = (
    "Violet diamonds tiled in a regular lattice stand for point defects in a gemstone. Why do they glow? "
    "Physicists show how order governs this system."
)
WORDINGS = {
    "question and story on one line": f"Which of the following options best describe the cover story? The story "
    f"is: {STORY}\nA. <image>\nB. <image>\nC. <image>\nD. <image>",
    "question line then story": f"Which Nature cover matches this cover story?\n{STORY}\nA. <image>\nB. <image>\n"
    f"C. <image>\nD. <image>",
    "label and trailing instruction": f"Select the journal cover that matches the story.\nCover story: {STORY}\n"
    "Options:\n(A) <image>\n(B) <image>\n(C) <image>\n(D) <image>\n"
    "Answer with the option's letter from the given choices directly.",
    "story first": f"{STORY}\nWhich cover image illustrates the story above?\nA: <image>\nB: <image>\nC: <image>\n"
    "D: <image>",
    "bare images": f"<image><image><image><image>\nWhich image is the cover of this story? {STORY}",
}


def _t2i(text: str) -> Item:
    imgs = [f"/covers/{k}.png" for k in range(text.count("<image>"))]
    try:
        opts = [
            Option(letter=o.letter, text=o.text, span=(o.start, o.end), image=imgs[k])
            for k, o in enumerate(parse_options(text))
        ]
    except ValueError:
        opts = [Option(letter="ABCD"[k], text="<image>", image=p) for k, p in enumerate(imgs)]
    return Item(id="x", task="text2image", input=text, options=opts, images=imgs, gold="B")


@pytest.mark.parametrize("wording", list(WORDINGS))
def test_the_story_is_taken_from_real_wordings(wording):
    assert story_of(_t2i(WORDINGS[wording])) == STORY


def test_a_story_that_still_reads_like_the_question_is_an_error():
    with pytest.raises(StoryError, match="still reads like the question"):
        story_of(_t2i("Which of the following covers best matches: the following options\nA. <image>\nB. <image>"))
    with pytest.raises(StoryError, match="no cover story"):
        story_of(_t2i("Which cover matches the story?\nA. <image>\nB. <image>"))


def test_recombination_on_one_line_wording_builds_clean_options(tmp_path, sample_dir):
    """The bug seen on real data: each recombined option was the question plus the story."""
    from distill.augment import AugmentConfig, augment

    items = []
    for it in load_json(sample_dir / "text2image_train.json").items[:12]:
        story = story_of(it)
        text = (
            "Which of the following options best describe the cover story? The story is: "
            + story
            + "\nA. <image>\nB. <image>\nC. <image>\nD. <image>"
        )
        opts = [
            Option(letter=o.letter, text=o.text, span=(o.start, o.end), image=it.images[k])
            for k, o in enumerate(parse_options(text))
        ]
        items.append(it.model_copy(update={"input": text, "options": opts, "split": "train"}))
    new, _ = augment(items, AugmentConfig(permutations=0, option_counts=[4]), progress=False)
    stories = {story_of(it) for it in items}
    assert new and all(it.task == "image2text" for it in new)
    for it in new:
        assert {o.text for o in it.options} <= stories  # the stories alone: no question text in any option
        assert not any("best describe" in o.text for o in it.options)


def test_the_same_id_in_both_tasks_loads_and_clashes_name_both_records(tmp_path, sample_dir):
    i2t = json.loads((sample_dir / "image2text_dev.json").read_text())
    t2i = json.loads((sample_dir / "text2image_dev.json").read_text())
    for r in i2t + t2i:
        r["images"] = [str(sample_dir / p) for p in r["images"]]
        r["id"] = "nature-2024-05-02"  # MAC ids name the journal issue
    (tmp_path / "image2text_dev.json").write_text(json.dumps(i2t[:1]))
    (tmp_path / "text2image_dev.json").write_text(json.dumps(t2i[:1]))
    data = load_data(DataConfig(dev=[str(tmp_path / "image2text_dev.json"), str(tmp_path / "text2image_dev.json")]))
    assert sorted(it.key for it in data.splits["dev"]) == [
        "image2text/nature-2024-05-02",
        "text2image/nature-2024-05-02",
    ]
    (tmp_path / "image2text_test.json").write_text(json.dumps([i2t[1] | {"output": ""}]))
    with pytest.raises(DataError) as err:
        load_data(
            DataConfig(dev=[str(tmp_path / "image2text_dev.json")], test=[str(tmp_path / "image2text_test.json")])
        )
    msg = str(err.value)
    assert "image2text_dev.json" in msg and "(dev)" in msg and "image2text_test.json" in msg and "test" in msg


def test_a_file_listed_under_the_wrong_split_is_an_error(sample_dir):
    with pytest.raises(DataError, match="listed under data.train but its name says test"):
        load_data(DataConfig(train=[str(sample_dir / "image2text_test.json")]))
