"""SPaR's constraint taxonomy and where IFEval's 25 verifiable types sit in it.

Groups (from the paper): Format, Content, General. ``free`` constraints (no checker) are judged by
the refiner only.
"""

from __future__ import annotations

TAXONOMY: dict[str, dict[str, str]] = {
    "Format": {
        "length": "how long: words, sentences, paragraphs",
        "text_format": "JSON, Markdown, lists, tables, bullets, sections, postscript",
        "character_format": "letter case, capitalised words",
        "template": "fixed openings, endings, titles, placeholders, fixed answers",
        "punctuation": "punctuation that must or must not appear",
        "numeric_format": "how numbers are written",
    },
    "Content": {
        "keyword": "words that must appear, appear often, or not appear",
        "symbol": "characters and symbols that must appear a number of times",
        "sentence": "sentences that must be repeated or placed",
        "genre": "the kind of text: poem, email, story ...",
    },
    "General": {
        "language": "the language of the answer",
        "situation": "a role or scenario to answer from",
        "language_style": "tone, register, audience",
        "sentiment": "the feeling the answer conveys",
    },
}

# IFEval instruction type -> (group, category)
IFEVAL_PLACE: dict[str, tuple[str, str]] = {
    "length_constraints:number_words": ("Format", "length"),
    "length_constraints:number_sentences": ("Format", "length"),
    "length_constraints:number_paragraphs": ("Format", "length"),
    "length_constraints:nth_paragraph_first_word": ("Format", "length"),
    "detectable_format:json_format": ("Format", "text_format"),
    "detectable_format:number_bullet_lists": ("Format", "text_format"),
    "detectable_format:number_highlighted_sections": ("Format", "text_format"),
    "detectable_format:multiple_sections": ("Format", "text_format"),
    "detectable_content:postscript": ("Format", "text_format"),
    "change_case:english_lowercase": ("Format", "character_format"),
    "change_case:english_capital": ("Format", "character_format"),
    "change_case:capital_word_frequency": ("Format", "character_format"),
    "detectable_format:title": ("Format", "template"),
    "detectable_format:constrained_response": ("Format", "template"),
    "detectable_content:number_placeholders": ("Format", "template"),
    "startend:end_checker": ("Format", "template"),
    "startend:quotation": ("Format", "punctuation"),
    "punctuation:no_comma": ("Format", "punctuation"),
    "keywords:existence": ("Content", "keyword"),
    "keywords:frequency": ("Content", "keyword"),
    "keywords:forbidden_words": ("Content", "keyword"),
    "keywords:letter_frequency": ("Content", "symbol"),
    "combination:repeat_prompt": ("Content", "sentence"),
    "combination:two_responses": ("Content", "genre"),
    "language:response_language": ("General", "language"),
}

