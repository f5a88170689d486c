"""MAC's CSVs as MAC's own builder writes them (`Dataset/understanding/any_num_single_choice_construct.py`, saved
with pandas' `to_csv(index=False)`): `journal, id, question, cover_image, answer`, then per option `option_X`,
`option_X_path`, `option_X_embedding_name`, `option_X_embedding_id`, and `split`. For text2image `cover_image` holds
the story and `option_X` the covers; for image2text `option_X` hold the stories."""

from __future__ import annotations

import csv
from pathlib import Path

from distill.data.records import load_json
from distill.data.stories import story_of

QUESTIONS = {
    "image2text": "Which of the following options best describe the cover image?",
    "text2image": "Which of the following options best describe the cover story?",
}
EMBEDDINGS = ["siglip", "doubao", "qwen", "ave_0"]


def header(n_options: int = 4) -> list[str]:
    cols = ["journal", "id", "question", "cover_image", "answer"]
    for L in "ABCD"[:n_options]:
        cols += [f"option_{L}", f"option_{L}_path", f"option_{L}_embedding_name", f"option_{L}_embedding_id"]
    return cols + ["split"]


def write_mac_csvs(sample_dir: Path, out: Path, split: str = "train") -> dict[str, Path]:
    """The sample set's `split` records of both tasks in MAC's layout; every other text2image story is written in two
    paragraphs (MAC's story files often are), and every third text2image question ends with its story, as some
    conversions write it."""
    paths = {}
    for task in ("image2text", "text2image"):
        items = load_json(sample_dir / f"{task}_{split}.json").items
        path = paths[task] = out / f"mac_{task}_{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header())
            for k, it in enumerate(items):
                row = [it.journal or "Nature", it.id, QUESTIONS[task]]
                if task == "image2text":
                    row += [it.images[0], it.gold]
                    options = [(o.text, f"Story/{it.journal}/{o.letter}.txt") for o in it.options]
                else:
                    story = story_of(it)
                    if k % 2:
                        story = story.replace(", ", ",\n\n", 1)
                    if k % 3 == 0:
                        row[2] = f"{QUESTIONS[task]} The story is: {story}"
                    row += [story, it.gold]
                    options = [(o.image, o.image) for o in it.options]
                for (value, where), name in zip(options, EMBEDDINGS):
                    embedding = "groundtruth" if value == it.gold_option.text or value == it.gold_option.image else name
                    row += [value, where, embedding, f"{it.id}.txt"]
                w.writerow(row + [split])
    return paths
