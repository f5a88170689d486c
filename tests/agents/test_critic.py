from agents.critic import critique, same_option
from agents.settings import TeacherConfig
from distill.data.permute import permute, rotation
from distill.data.records import load_json

S = TeacherConfig()
GOOD = (
    "The cover tiles crimson hexagons in a lattice, a picture of long-range order in a carbon sheet; "
    "only one story speaks of that order and that hue."
)


def _item(sample_dir):
    return load_json(sample_dir / "image2text_dev.json").items[0]


def test_verdicts(sample_dir):
    item = _item(sample_dir)
    wrong = next(L for L in item.letters if item.gold != L)
    assert critique(item, GOOD, item.gold, S).verdict == "accepted"
    assert critique(item, GOOD, wrong, S).reason == "wrong_answer"
    assert critique(item, GOOD, None, S).reason == "no_answer"
    assert critique(item, "Too short.", item.gold, S).reason == "too_short"
    leak = GOOD + " As the hint says, this is the one."
    assert critique(item, leak, item.gold, S).reason == "hint_leak"
    assert critique(item, "The matching option is given, so " + GOOD, item.gold, S).reason == "hint_leak"
    unlabelled = item.model_copy(update={"gold": None})
    assert critique(unlabelled, GOOD, "A", S).verdict == "cannot_judge"


def test_feedback_never_reveals_the_gold(sample_dir):
    item = _item(sample_dir)
    wrong = next(L for L in item.letters if item.gold != L)
    fb = critique(item, GOOD, wrong, S).feedback
    assert item.gold_option.text not in fb and f" {item.gold}" not in fb


def test_consistency_compares_content_not_letters(sample_dir):
    item = _item(sample_dir)
    rotated = permute(item, rotation(4, 1))
    assert same_option(item, rotated, item.gold, rotated.gold)
    assert not same_option(item, rotated, item.gold, item.gold)
