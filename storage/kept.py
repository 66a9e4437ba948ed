"""What a repository read in its transaction, kept until the transaction next writes."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Counted(Protocol):
    @property
    def writes(self) -> int:
        """Statements other than SELECT run so far (`Transaction.writes`)."""
        ...


class UntilWrite(Generic[K, V]):
    """Values read in a transaction, forgotten as soon as it writes (a write may change any
    of them), so a command that asks for the same rows three times reads them once."""

    def __init__(self, tx: Counted) -> None:
        self._tx = tx
        self._values: dict[K, V] = {}
        self._at = -1  # the write count the values were read at

    def __contains__(self, key: K) -> bool:
        return key in self._current()

    def __getitem__(self, key: K) -> V:
        return self._current()[key]

    def get(self, key: K) -> V | None:
        return self._current().get(key)

    def keep(self, key: K, value: V, stamp: int) -> None:
        """Keep `value`, read when the write count was `stamp`, unless something wrote since."""
        if self._tx.writes == stamp:
            self._current()[key] = value

    def _current(self) -> dict[K, V]:
        if self._at != self._tx.writes:
            self._values.clear()
            self._at = self._tx.writes
        return self._values
