import pytest

from distill.data.options import OptionParseError, parse_options, render_options


@pytest.mark.parametrize("style", ["A. ", "A) ", "(A) ", "A: "])
def test_each_label_style(style):
    text = "<image>\nWhich story fits?\n" + render_options(["first story", "second", "third", "fourth"], style)
    opts = parse_options(text)
    assert [o.letter for o in opts] == list("ABCD")
    assert [o.text for o in opts] == ["first story", "second", "third", "fourth"]
    for o in opts:
        assert text[o.start : o.end] == o.text


def test_multiline_options_and_trailing_instruction():
    text = (
        "Question about a cover. A new method is shown.\nA. Line one of A\ncontinues here\n"
        "B. Option B\nC. Option C\n   wraps too\nD. Option D\n\nAnswer with the letter only."
    )
    opts = parse_options(text)
    assert opts[0].text == "Line one of A\ncontinues here"
    assert opts[2].text == "Option C\n   wraps too"
    assert opts[3].text == "Option D"  # the instruction after the blank line is not part of D


def test_question_words_are_not_labels():
    text = "A cell is drawn as a city. B cells too.\nA. alpha\nB. beta"
    assert [o.text for o in parse_options(text)] == ["alpha", "beta"]


def test_unparseable_raises():
    with pytest.raises(OptionParseError, match="no run of option labels"):
        parse_options("just a question with no options at all")
