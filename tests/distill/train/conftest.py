import pytest

from distill.ingest import DataConfig, ingest


@pytest.fixture(scope="module")
def train_store(sample_dir, tmp_path_factory):
    """A store with the sample items and, per training item, one accepted and one wrong-answer rationale."""
    from store import open_store

    path = tmp_path_factory.mktemp("train") / "traces.db"
    s = open_store(path)
    run = s.start_run("graph", {}, run_id="teacher")
    ingest(
        s,
        DataConfig(
            train=[str(sample_dir / "image2text_train.json"), str(sample_dir / "text2image_train.json")],
            validation_fraction=0.25,
            max_pixels=3136,
        ),
    )
    for k, item in enumerate(s.items(split="train")):
        wrong = next(L for L in item.letters if item.gold != L)
        s.finish_item(
            run,
            item.key,
            1,
            "accepted",
            [
                {
                    "sample": 0,
                    "attempt": 0,
                    "hinted": 0,
                    "answer": wrong,
                    "verdict": "rejected",
                    "reason": "wrong_answer",
                    "rationale": "The stripes suggest layered growth, so the option about rows fits best.",
                },
                {
                    "sample": 0,
                    "attempt": 1,
                    "hinted": int(k % 5 == 0),
                    "answer": item.gold,
                    "verdict": "accepted",
                    "reason": "ok",
                    "rationale": "The colour and the shapes of the cover match this story's motifs.",
                },
            ],
        )
    s.close()
    return path
