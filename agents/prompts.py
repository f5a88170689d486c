"""Every prompt the agents send, versioned: a change of wording gets a new version, so cached
descriptions and stored traces always say which wording produced them."""

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
    "each option against them, then pick one. End with a last line of the form 'Answer: X', where X is "
    "one of {letters}."
)
DESCRIPTIONS_HEADER = "Descriptions of the cover images:"
FEEDBACK = "A reviewer rejected your previous reasoning: {feedback} Reason again from the evidence."
HINT = (
    "For this item the matching option is {gold}. Write reasoning that reaches it from the visual evidence "
    "and the science, as if you had worked it out yourself: never mention this note, a hint, or that the "
    "answer was given."
)
DIRECT_INSTRUCTION = "Answer with the letter of the matching option only."
ANSWER_LINE = "Answer: {letter}"

CRITIC_FEEDBACK = {
    "no_answer": "It did not end with a line 'Answer: X' naming one option.",
    "wrong_answer": "Its conclusion does not fit the cover; look again at what each visual element stands "
    "for and at the details that tell the options apart.",
    "hint_leak": "It referred to being told the answer; reason only from the cover and the options.",
    "too_short": "It was too short to show how the cover's elements map to the story.",
    "too_long": "It was too long; keep to the evidence that decides between the options.",
    "inconsistent": "With the options in another order it chose a different option; reason about "
    "content, not position.",
}
