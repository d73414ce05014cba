"""A chunk's timestamped tokens with the words only its no-timestamp decode found folded in.

Requirement: the chunked mode's text is never worse than transformers' pipeline without
timestamps on the same audio, and still has segment times. Decoding with timestamps loses
words that decoding without them keeps (a stretch skipped between two timestamps, a segment
given up on), and the reverse happens too. So each chunk is also decoded without timestamps
(on the same encoder output), the two token sequences are aligned (difflib: the sequences
differ by whole stretches, which a longest-matching-blocks alignment places well), and the
stretches only the plain decode has are inserted into the timestamped tokens where the
alignment puts them, inside the segment they fall in. Where the decodes heard different words
the plain decode's are taken (so the text is the plain decode's plus what only the timestamped
one heard). The pipeline's merge then joins the chunks as before.
"""

from __future__ import annotations

from difflib import SequenceMatcher


def fold_in(timed: list[int], plain: list[int], first_special: int) -> list[int]:
    """`plain`'s words placed in `timed`'s segments, plus the words only `timed` has.

    Text tokens are ids below `first_special`; `timed`'s timestamps all stay where they are.
    """
    positions = [i for i, t in enumerate(timed) if t < first_special]
    words = [timed[i] for i in positions]
    other = [t for t in plain if t < first_special]
    if not positions:
        return timed if not other else timed[:1] + other + timed[1:]
    inserts: dict[int, list[int]] = {}
    removed: set[int] = set()
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, words, other, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):  # before timed word i1 (or after the last)
            at = positions[i1] if i1 < len(positions) else positions[-1] + 1
            inserts.setdefault(at, []).extend(other[j1:j2])
            removed.update(positions[i1:i2])
        elif tag == "delete" and _contains(other, words[i1:i2]):  # a repeat of words plain has
            removed.update(positions[i1:i2])
    out: list[int] = []
    for i, token in enumerate(timed):
        out += inserts.get(i, [])
        if i not in removed:
            out.append(token)
    return out + inserts.get(len(timed), [])


def _contains(tokens: list[int], run: list[int]) -> bool:
    return any(tokens[i : i + len(run)] == run for i in range(len(tokens) - len(run) + 1))
