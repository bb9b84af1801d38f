"""Token streaming for a batch: each row's text, piece by piece, as ``generate`` produces it.

transformers' ``TextIteratorStreamer`` handles one sequence; the server batches several
requests into one ``generate``, so this streamer splits each step's tokens by row. It sends
exactly the text ``generate`` returns: decoded without special tokens, stripped (leading
whitespace is held back until text follows, trailing whitespace until more text follows),
and never half a UTF-8 character (a byte-level BPE token can end mid-character).
"""

from __future__ import annotations

from typing import Any, Callable

from transformers.generation.streamers import BaseStreamer


class RowStreamer(BaseStreamer):
    """Calls ``on_delta(row, text)`` with each new piece of a row's stripped text."""

    def __init__(self, tokenizer: Any, on_delta: Callable[[int, str], None]):
        self.tok = tokenizer
        self.on_delta = on_delta
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.ids: list[list[int]] | None = None  # None until the prompt has gone by
        self.sent: list[str] = []
        self.done: list[bool] = []

    def put(self, value) -> None:
        if self.ids is None:  # the first call carries the prompts, not generated tokens
            n = value.shape[0] if value.dim() > 1 else 1
            self.ids, self.sent, self.done = [[] for _ in range(n)], [""] * n, [False] * n
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token == self.eos:
                self.done[row] = True
                continue
            self.ids[row].append(int(token))
            text = self.tok.decode(self.ids[row], skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete character: wait for its next bytes
                continue
            text = text.strip()
            if text.startswith(self.sent[row]) and len(text) > len(self.sent[row]):
                self.on_delta(row, text[len(self.sent[row]):])
                self.sent[row] = text

    def end(self) -> None:
        """Nothing held back matters: the caller sends what is left of the final text."""
