"""An in-process BM25 index of one team's memories, for keyword search on SQLite.

FTS5 scores every memory that matches a query before it can keep the best few: at 100,000 memories a two-word
query matching half of them took ~80 ms (bm25() over every match, then a lookup of each match's team). Here a
team's postings live in numpy arrays and a query is scored in a millisecond or two.

Words are stemmed and folded by SQLite's own FTS5 tokenizer (an in-memory FTS5 table with memory_fts's tokenize
option, the same library), so this index and memory_fts agree on what a word is: "refunded" and "REFUNDS" are
both "refund". Statistics (document count, lengths, document frequency) are the team's own.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, pairwise

import numpy as np

from storage.memory.ranking import RECENCY_WEIGHT, RELEVANCE_WEIGHT, recency

FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"  # memory_fts's, since migration 0014
K1, B = 1.2, 0.75  # BM25's usual constants, as FTS5's bm25() uses
MAX_WORDS_KEPT = 500_000  # distinct words whose terms the tokenizer remembers (a few tens of MB)
_WORD = re.compile(r"[^\W_]+")  # letters and digits: unicode61's token characters


class Tokenizer:
    """Terms as memory_fts makes them. Texts are split into words here (letters and digits, as unicode61 does);
    each distinct word is stemmed and folded once by a contentless FTS5 table in an in-memory SQLite database,
    and remembered (FTS5 lists its terms slowly, a few microseconds each, so a text at a time would be slow).

    Thread-safe (a lock around the one connection), so that large batches can be tokenized off the event loop."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(
            f"CREATE VIRTUAL TABLE words USING fts5(text, content='', tokenize='{FTS_TOKENIZE}')"
        )
        self._db.execute("CREATE VIRTUAL TABLE word_instances USING fts5vocab(words, instance)")
        self._lock = threading.Lock()
        self._terms: dict[str, tuple[str, ...]] = {}

    def postings(self, texts: Sequence[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """For each term, the positions (in ``texts``) of the texts holding it and how often each does (int32
        arrays); and each text's length in terms."""
        words = [_WORD.findall(text.lower()) for text in texts]
        terms = self._of({word for text_words in words for word in text_words})
        numbers = {
            term: n for n, term in enumerate(dict.fromkeys(t for found in terms.values() for t in found))
        }
        word_numbers = {word: [numbers[term] for term in found] for word, found in terms.items()}
        sizes = {word: len(found) for word, found in terms.items()}
        occurrences = np.fromiter(
            chain.from_iterable(map(word_numbers.__getitem__, chain.from_iterable(words))), dtype=np.int64
        )
        lengths = np.fromiter(
            (sum(map(sizes.__getitem__, text_words)) for text_words in words),
            dtype=np.int64,
            count=len(words),
        )
        docs = np.repeat(np.arange(len(words), dtype=np.int64), lengths)
        # (term, text) pairs sorted by term, then text: each run of one term is its posting list
        width = max(len(words), 1)
        pairs, counts = np.unique(occurrences * width + docs, return_counts=True)
        term_of, doc_of = np.divmod(pairs, width)
        doc_of, tf = doc_of.astype(np.int32), counts.astype(np.int32)
        bounds = [*np.flatnonzero(np.diff(term_of, prepend=-1)).tolist(), len(pairs)]
        names = list(numbers)
        postings = {
            names[int(term_of[start])]: (doc_of[start:end], tf[start:end]) for start, end in pairwise(bounds)
        }
        return postings, lengths

    def stemmed(self, text: str) -> str:
        """The text as its terms, each occurrence in turn, separated by spaces: for a search engine without
        this stemmer (Weaviate's BM25) to rank as memory_fts does."""
        words = _WORD.findall(text.lower())
        terms = self._of(set(words))
        return " ".join(term for word in words for term in terms[word])

    def terms(self, query: str) -> list[str]:
        """The distinct terms of a query, in the order they come."""
        words = _WORD.findall(query.lower())
        terms = self._of(set(words))
        return list(dict.fromkeys(term for word in words for term in terms[word]))

    def _of(self, words: set[str]) -> dict[str, tuple[str, ...]]:
        with self._lock:
            if len(self._terms) > MAX_WORDS_KEPT:
                self._terms.clear()
            new = [word for word in words if word not in self._terms]
            for word in new:
                if word.isascii() and word.isdigit():
                    self._terms[word] = (word,)  # nothing to stem or fold
            new = [word for word in new if word not in self._terms]
            if new:
                self._db.executemany("INSERT INTO words(rowid, text) VALUES (?, ?)", enumerate(new))
                found: dict[int, list[str]] = {}
                for term, doc in self._db.execute(
                    "SELECT term, doc FROM word_instances ORDER BY doc, offset"
                ):
                    found.setdefault(doc, []).append(term)
                self._db.execute("INSERT INTO words(words) VALUES ('delete-all')")
                for doc, word in enumerate(new):
                    self._terms[word] = tuple(found.get(doc, ()))
            return {word: self._terms[word] for word in words}


@dataclass
class TeamIndex:
    """One team's memories, in id order; appended to as memories are added, rebuilt now and then.

    Memories found deleted are marked dead and no longer ranked; they still count in the statistics until the
    next rebuild."""

    built_at: float
    ids: array[int] = field(default_factory=lambda: array("q"))
    created: array[float] = field(default_factory=lambda: array("d"))  # POSIX seconds
    kinds: array[int] = field(default_factory=lambda: array("i"))  # codes into kind_codes
    lengths: array[float] = field(default_factory=lambda: array("f"))
    dead: array[int] = field(default_factory=lambda: array("b"))
    kind_codes: dict[str, int] = field(default_factory=dict)
    postings: dict[str, tuple[array[int], array[int]]] = field(default_factory=dict)
    total_length: float = 0.0
    settled: int = 0  # on PostgreSQL: every memory up to this id that will ever be committed is held

    def holds(self, memory_ids: Sequence[int]) -> bool:
        """Whether every one of these memories is held (dead or not)."""
        wanted = np.asarray(memory_ids, dtype=np.int64)
        ids = np.frombuffer(self.ids, dtype=np.int64)
        if not len(wanted):
            return True
        if not len(ids):
            return False
        positions = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        return bool(np.all(ids[positions] == wanted))

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    def add(
        self,
        rows: Sequence[tuple[int, str, datetime]],
        postings: dict[str, tuple[np.ndarray, np.ndarray]],
        lengths: np.ndarray,
    ) -> None:
        """Append memories (id, kind, created_at), newer than any held, with their tokenized texts."""
        offset = len(self.ids)
        for memory_id, kind, created_at in rows:
            self.ids.append(memory_id)
            self.created.append(created_at.timestamp())
            self.kinds.append(self.kind_codes.setdefault(kind, len(self.kind_codes)))
            self.dead.append(0)
        self.lengths.frombytes(lengths.astype(np.float32).tobytes())
        self.total_length += float(lengths.sum())
        for term, (docs, counts) in postings.items():
            if term not in self.postings:
                self.postings[term] = (array("i"), array("i"))
            held_docs, held_counts = self.postings[term]
            held_docs.frombytes((docs + offset).astype(np.int32).tobytes())
            held_counts.frombytes(counts.astype(np.int32).tobytes())

    def forget(self, memory_ids: Sequence[int]) -> None:
        positions = np.searchsorted(np.frombuffer(self.ids, dtype=np.int64), np.asarray(memory_ids))
        for position, memory_id in zip(positions.tolist(), memory_ids, strict=True):
            if position < len(self.ids) and self.ids[position] == memory_id:
                self.dead[position] = 1

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 of every memory held (0 for those matching no term)."""
        n = len(self.ids)
        scores = np.zeros(n, dtype=np.float64)
        if not n:
            return scores
        lengths = np.frombuffer(self.lengths, dtype=np.float32)
        average = self.total_length / n or 1.0
        for term in dict.fromkeys(terms):
            if term not in self.postings:
                continue
            docs_, counts_ = self.postings[term]
            docs, tf = np.frombuffer(docs_, dtype=np.int32), np.frombuffer(counts_, dtype=np.int32)
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            scores[docs] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[docs] / average))
        return scores

    def scores_of(self, terms: Sequence[str], memory_ids: Sequence[int]) -> dict[int, float]:
        """BM25 of these memories (those held; 0 for one matching no term), without scoring every memory: for
        candidates found otherwise (by their vectors) to be ranked by both their scores."""
        wanted = np.asarray(memory_ids, dtype=np.int64)
        ids = np.frombuffer(self.ids, dtype=np.int64)
        if not len(wanted) or not len(ids):
            return {}
        positions = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        positions = positions[ids[positions] == wanted]
        scores = np.zeros(len(positions), dtype=np.float64)
        lengths = np.frombuffer(self.lengths, dtype=np.float32)[positions]
        n = len(ids)
        average = self.total_length / n or 1.0
        for term in dict.fromkeys(terms):
            if term not in self.postings:
                continue
            docs_, counts_ = self.postings[term]
            docs, counts = np.frombuffer(docs_, dtype=np.int32), np.frombuffer(counts_, dtype=np.int32)
            at = np.minimum(np.searchsorted(docs, positions), len(docs) - 1)  # postings are in id order
            tf = np.where(docs[at] == positions, counts[at], 0)
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            scores += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths / average))
        return {int(ids[p]): float(s) for p, s in zip(positions.tolist(), scores.tolist(), strict=True)}

    def ranked(
        self,
        terms: Sequence[str],
        limit: int,
        kinds: Sequence[str] | None,
        since: datetime | None,
        now: datetime,
    ) -> dict[int, float]:
        """BM25 of the ``limit`` memories matching any term (and the filters) that rank best once boosted for
        recency as the store boosts its hits (:func:`recency_boosted`), best first; with them the memory of the
        best BM25, which that boost measures relevance against. So these few, re-ranked, come in the order that
        ranking every memory would give."""
        scores = self.scores(terms)
        created = np.frombuffer(self.created, dtype=np.float64)
        keep = scores > 0
        keep &= np.frombuffer(self.dead, dtype=np.int8) == 0
        if kinds is not None:
            codes = [self.kind_codes[kind] for kind in kinds if kind in self.kind_codes]
            keep &= np.isin(np.frombuffer(self.kinds, dtype=np.int32), codes)
        if since is not None:
            keep &= created >= since.timestamp()
        matched = np.flatnonzero(keep)
        if not len(matched):
            return {}
        relevance = scores[matched]
        ages = np.maximum(now.timestamp() - created[matched], 0.0) / 86400
        boosted = RELEVANCE_WEIGHT * relevance / relevance.max() + RECENCY_WEIGHT * recency(ages)
        chosen = {int(matched[np.argmax(relevance)])}
        if len(matched) > limit:
            top = np.argpartition(-boosted, limit - 1)[:limit]
            chosen.update(matched[top].tolist())
        else:
            chosen.update(matched.tolist())
        return {self.ids[i]: float(scores[i]) for i in sorted(chosen, key=lambda i: (-scores[i], -i))}
