"""Emotion quiz logic: which images, in which order, and the score (no Streamlit here).

The order is a seeded shuffled deck: no image comes back before every image has been
shown; then a fresh shuffle starts, never opening with the image that just closed the
last one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from emorec.imageio import IMAGE_EXTS



@dataclass(frozen=True)
class QuizItem:
    path: Path
    label: str  # the true emotion: the name of the image's class folder


def find_quiz_items(quiz_dir: str | Path, classes: Iterable[str], per_class: int | None = None,
                    seed: int = 0) -> list[QuizItem]:
    """Images under ``quiz_dir/<class>/`` for the given classes (the model's), sorted.

    Folders of classes the model does not know are left out, so every true label is an
    answer the player can pick. ``per_class`` keeps a seeded sample of that many per class.
    """
    quiz_dir = Path(quiz_dir)
    if not quiz_dir.is_dir():
        return []
    folders = {p.name.lower(): p for p in quiz_dir.iterdir() if p.is_dir()}
    items: list[QuizItem] = []
    for label in classes:
        folder = folders.get(label.lower())
        if folder is None:
            continue
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if per_class is not None and len(files) > per_class:
            files = sorted(random.Random(f"{seed}:{label}").sample(files, per_class))
        items += [QuizItem(p, label) for p in files]
    return items


def folder_stamp(quiz_dir: str | Path) -> tuple:
    """Changes when class folders or their files are added or removed: a cache key that
    notices a split created (or refreshed) while the app is running."""
    quiz_dir = Path(quiz_dir)
    if not quiz_dir.is_dir():
        return ()
    dirs = [quiz_dir, *sorted(p for p in quiz_dir.iterdir() if p.is_dir())]
    return tuple((p.name, p.stat().st_mtime_ns) for p in dirs)


@dataclass
class RoundResult:
    truth: str
    guess: str
    predicted: str
    probs: dict[str, float]

    @property
    def player_right(self) -> bool:
        return self.guess == self.truth

    @property
    def model_right(self) -> bool:
        return self.predicted == self.truth


@dataclass
class QuizState:
    """Deck position and running score of one player (kept in ``st.session_state``)."""

    size: int
    seed: int = 0
    deck: list[int] = field(default_factory=list)
    deck_no: int = 0
    pos: int = 0
    rounds: int = 0
    player: int = 0
    model: int = 0
    result: RoundResult | None = None  # the answer to the current image, once given

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("a quiz needs at least one image")
        if not self.deck:
            self.deck = self._shuffle(0)

    def _shuffle(self, deck_no: int) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}:{deck_no}").shuffle(order)
        return order

    @property
    def current(self) -> int:
        """Index (into the quiz items) of the image on screen."""
        return self.deck[self.pos]

    @property
    def answered(self) -> bool:
        return self.result is not None

    def answer(self, guess: str, truth: str, predicted: str, probs: dict[str, float]) -> RoundResult:
        """Score the current image once; a second submit (double click) changes nothing."""
        if self.result is None:
            self.result = RoundResult(truth, guess, predicted, dict(probs))
            self.rounds += 1
            self.player += self.result.player_right
            self.model += self.result.model_right
        return self.result

    def next(self) -> None:
        self.result = None
        self.pos += 1
        if self.pos == len(self.deck):
            last = self.deck[-1]
            self.deck_no += 1
            self.deck = self._shuffle(self.deck_no)
            if self.size > 1 and self.deck[0] == last:
                self.deck[0], self.deck[-1] = self.deck[-1], self.deck[0]
            self.pos = 0

    def reset_score(self) -> None:
        """Zero the score; an image whose answer is already shown is not asked again."""
        self.rounds = self.player = self.model = 0
        if self.result is not None:
            self.next()
