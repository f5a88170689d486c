"""Every prompt the agents send, versioned: a change of wording gets a new version, so cached
descriptions and stored traces always say which wording produced them.

The markers below are a contract: every request the agents build carries them verbatim where stated, and the
sample-cover teacher (distill/kit/sample_teacher) tells requests apart by them and by no other wording
(tests/agents/test_prompt_markers.py holds the prompts to it). A marker may be reworded, under a new version;
a prompt that drops one breaks the teacher.
"""

# The reasoner's last line, and the form its instruction asks for: a request carrying ANSWER_FORMAT wants a
# chain of thought ending in that line.
ANSWER_LINE = "Answer: {letter}"
ANSWER_FORMAT = ANSWER_LINE.format(letter="X")
# Opens the describer's captions in the reasoner's prompt, one "Image N (option L): caption" line per image; a
# blank line closes them, before the question.
DESCRIPTIONS_HEADER = "Descriptions of the cover images:"
# A rationalization (STaR) hint: this, then the hinted option's letter.
HINT_MARKER = "For this item the matching option is "

DESCRIBER_VERSION = "describer-v1"
DESCRIBER_SYSTEM = (
    "You describe scientific journal cover images faithfully and in detail. Describe only what is "
    "visible: the main visual elements and symbols, their shapes, colours, textures and layout, any text "
    "printed on the cover, and the overall style. Do not guess which article the cover belongs to."
)
DESCRIBER_USER = "Describe this journal cover."

REASONER_VERSION = "reasoner-v1"
REASONER_SYSTEM = (
    "You are an expert scientific reader who matches journal covers with their cover stories. Covers are "
    "symbolic: a molecule drawn as a city, a cell as a landscape. Reason about the visual metaphors and the "
    "science they stand for, compare every option, and commit to one."
)
REASONER_INSTRUCTION = (
    "Think step by step. First say what the cover's visual elements stand for scientifically, then weigh "
    "each option against them, then pick one. End with a last line of the form '" + ANSWER_FORMAT + "', where X "
    "is one of {letters}."
)
FEEDBACK = "A reviewer rejected your previous reasoning: {feedback} Reason again from the evidence."
HINT = (
    HINT_MARKER + "{gold}. Write reasoning that reaches it from the visual evidence "
    "and the science, as if you had worked it out yourself: never mention this note, a hint, or that the "
    "answer was given."
)
DIRECT_INSTRUCTION = "Answer with the letter of the matching option only."

CRITIC_FEEDBACK = {
    "no_answer": f"It did not end with a line '{ANSWER_FORMAT}' naming one option.",
    "wrong_answer": "Its conclusion does not fit the cover; look again at what each visual element stands "
    "for and at the details that tell the options apart.",
    "hint_leak": "It referred to being told the answer; reason only from the cover and the options.",
    "too_short": "It was too short to show how the cover's elements map to the story.",
    "too_long": "It was too long; keep to the evidence that decides between the options.",
    "inconsistent": "With the options in another order it chose a different option; reason about "
    "content, not position.",
}
