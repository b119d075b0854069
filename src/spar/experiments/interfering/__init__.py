"""The interfering-factors experiment (SPaR's Figure 4 test): DPO on *refined* pairs, whose chosen
answer differs from the rejected one only where the instruction was broken, against DPO on
*interfering* pairs, whose chosen answer is also right but differs in something else, from the
same start with the same steps, learning rate, beta and seeds.

- **letters**: "write the letter x exactly n times" (n from 2 to 8). Rejected: lowercase, a wrong
  count. Refined chosen: the right count, lowercase. Interfering chosen: the right count in
  UPPERCASE. Accuracy: the right letter the right number of times (case does not count);
  interfering factor: the share of uppercase letters in the answers. Held-out prompts are
  (letter, count) combinations no training pair has.
- **story**: a short story of three to five sentences with a given first and last sentence. The
  story between them is the base model's own (greedy) two sentences. Rejected: the story without one
  of the two given sentences. Refined chosen: the same story with it put back. Interfering chosen:
  the two given sentences around *another* prompt's story. Both chosen answers are correct
  four-sentence stories. Accuracy: both sentences in place and three to five sentences in all;
  interfering factor: how much of the rejected story the answer keeps (rapidfuzz partial ratio).
- **ending**: one of the project's seed tasks with "the very last words must be <phrase>". Rejected:
  the first three sentences of the base model's own answer to the task, without the phrase. Refined chosen: the same three
  sentences and the phrase. Interfering chosen: only the first of them and the phrase (as correct,
  and much shorter). Accuracy: IFEval's end-phrase check; interfering factor: the share of short
  answers (at most two sentences, the phrase counted).

Each task's learning rate comes from a small pilot (both pair types, ``pilot_steps`` steps at each
of ``pilot_rates``, seed ``pilot_seed``, scored on training prompts, never the held-out ones): the
rate with the best mean accuracy of the two arms, the larger on a tie. Every evaluation samples
``samples`` answers per held-out prompt at step 0 (the base model) and every ``eval_every`` steps,
with the same sampling seed for both arms at a (seed, step). Results are appended per (task, pair
type, seed), so a rerun resumes. The primary endpoint is stated in the settings before the run
(:data:`PRIMARY`) and tested by :func:`arm_test`.
"""


from spar.experiments.interfering.analysis import (arm_test, plot, rescore, summary, write_outputs)
from spar.experiments.interfering.running import (build, choose_lr, evaluate, generate, greedy, run, score)
from spar.experiments.interfering.tasks import (TASKS, KINDS, PRIMARY, InterferingSettings, LETTERS, COUNTS,
                                                letter_prompt, letter_item, letters_items, letters_split, letters_ok,
                                                uppercase_share, WHO, DID, END, story_prompt, story_frames,
                                                continuation_prompt, middle_of, story_items, story_framed, sentences,
                                                story_ok, story_overlap, END_KIND, ending_prompt, ending_candidates,
                                                opening_sentences, ending_items, ending_ok, short_share, CHECK,
                                                MAX_TOKENS, FACTOR, factor, pairs)

__all__ = [
    "arm_test", "plot", "rescore", "summary", "write_outputs", "build", "choose_lr", "evaluate", "generate",
    "greedy", "run", "score", "TASKS", "KINDS", "PRIMARY", "InterferingSettings", "LETTERS", "COUNTS",
    "letter_prompt", "letter_item", "letters_items", "letters_split", "letters_ok", "uppercase_share", "WHO",
    "DID", "END", "story_prompt", "story_frames", "continuation_prompt", "middle_of", "story_items",
    "story_framed", "sentences", "story_ok", "story_overlap", "END_KIND", "ending_prompt", "ending_candidates",
    "opening_sentences", "ending_items", "ending_ok", "short_share", "CHECK", "MAX_TOKENS", "FACTOR", "factor",
    "pairs",
]
