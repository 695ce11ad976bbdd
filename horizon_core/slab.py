"""Slab: an O(1) map from generational tokens to values (registered sockets, for instance).

Rules this module obeys:

* A token is ``(generation << 32) | index``: it fits the u64 ``data`` field of an epoll event and
  the completion key of an IOCP packet, so drivers hand it to the kernel unchanged.
* Generations start at 1, so token 0 is never valid. ``remove`` bumps the slot's generation, so a
  token of a removed value never resolves again, even after the slot is reused.
* A slot whose generation would pass ``2**32 - 1`` is retired (never reused): generations never
  wrap, so a stale token can never alias a live one.
* Freed slots are reused last-in, first-out: the most recently touched slot is the one most likely
  to still be in the CPU cache.

Example:
    >>> from horizon_core.slab import Slab, token_generation, token_index
    >>> slab: Slab[str] = Slab()
    >>> t = slab.insert("udp socket")
    >>> token_index(t), token_generation(t), slab.get(t)
    (0, 1, 'udp socket')
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, NewType, TypeVar, cast

from horizon_core.errors import PoolExhaustedError, StaleTokenError

__all__ = [
    "MAX_GENERATION",
    "MAX_INDEX",
    "Slab",
    "Token",
    "token_generation",
    "token_index",
]

T = TypeVar("T")

#: ``(generation << 32) | index``; fits epoll's u64 data field.
Token = NewType("Token", int)

#: The last generation a slot may reach; a slot removed at this generation is retired.
MAX_GENERATION = 2**32 - 1
#: The largest slot index a token can carry.
MAX_INDEX = 2**32 - 1

_INDEX_MASK = 0xFFFFFFFF
_MAX_TOKEN = 2**64 - 1


class _Vacant:
    """Marks an empty slot (a sentinel distinct from any value, including None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<vacant>"


_VACANT = _Vacant()


def token_index(token: int) -> int:
    """The slot index a token names (its low 32 bits).

    Example:
        >>> token_index(Token((7 << 32) | 3))
        3
    """
    return token & _INDEX_MASK


def token_generation(token: int) -> int:
    """The generation a token was issued at (its high 32 bits).

    Example:
        >>> token_generation(Token((7 << 32) | 3))
        7
    """
    return token >> 32


def _describe(token: int) -> str:
    return f"token {token:#x} (index {token_index(token)}, generation {token_generation(token)})"


class Slab(Generic[T]):
    """Generational token allocator: insert, get and remove are O(1).

    Example:
        >>> slab: Slab[str] = Slab()
        >>> a = slab.insert("a")
        >>> slab.remove(a)
        'a'
        >>> b = slab.insert("b")          # reuses slot 0 at generation 2
        >>> a in slab, slab.get(b), token_index(a) == token_index(b)
        (False, 'b', True)
    """

    __slots__ = ("_entries", "_free", "_generations", "_len")

    def __init__(self) -> None:
        # Parallel lists indexed by slot: the value (or _VACANT) and the slot's generation, which
        # for a live slot is its token's generation and for a vacant slot the next one to issue.
        self._entries: list[T | _Vacant] = []
        self._generations: list[int] = []
        self._free: list[int] = []  # LIFO stack of reusable vacant slots
        self._len = 0

    def insert(self, value: T) -> Token:
        """Store ``value`` and return its token. Reuses the most recently freed slot.

        Example:
            >>> Slab[int]().insert(5)
            4294967296
        """
        if self._free:
            index = self._free.pop()
            self._entries[index] = value
        else:
            index = len(self._entries)
            if index > MAX_INDEX:
                raise PoolExhaustedError(f"slab is full: all {MAX_INDEX + 1} indices are in use")
            self._entries.append(value)
            self._generations.append(1)
        self._len += 1
        return Token((self._generations[index] << 32) | index)

    def _lookup(self, token: object) -> int:
        """Return the slot index of a live token, or -1."""
        if type(token) is not int or not 0 < token <= _MAX_TOKEN:
            return -1
        index = token & _INDEX_MASK
        if (
            index < len(self._entries)
            and self._generations[index] == token >> 32
            and self._entries[index] is not _VACANT
        ):
            return index
        return -1

    def _stale(self, token: object) -> StaleTokenError:
        if type(token) is not int or not 0 <= token <= _MAX_TOKEN:
            return StaleTokenError(f"{token!r} is not a token (expected an int from 1 to 2**64-1)")
        index = token_index(token)
        if index >= len(self._entries):
            return StaleTokenError(f"{_describe(token)} was never issued by this slab")
        current = self._generations[index]
        if self._entries[index] is _VACANT and current > MAX_GENERATION:
            return StaleTokenError(f"{_describe(token)} is stale: slot {index} is retired")
        if token_generation(token) < current:
            return StaleTokenError(
                f"{_describe(token)} is stale: slot {index} was removed and is now at generation {current}"
            )
        return StaleTokenError(f"{_describe(token)} was never issued by this slab")

    def get(self, token: Token) -> T:
        """The value for a live token; StaleTokenError naming the token otherwise.

        Example:
            >>> slab: Slab[str] = Slab()
            >>> slab.get(slab.insert("x"))
            'x'
            >>> slab.get(Token(1 << 32 | 9))
            Traceback (most recent call last):
            ...
            horizon_core.errors.StaleTokenError: token 0x100000009 (index 9, generation 1) was never issued by this slab
        """  # noqa: E501
        index = self._lookup(token)
        if index < 0:
            raise self._stale(token)
        return cast(T, self._entries[index])

    def try_get(self, token: Token) -> T | None:
        """The value for a live token, or None.

        Example:
            >>> Slab[str]().try_get(Token(1 << 32)) is None
            True
        """
        index = self._lookup(token)
        return None if index < 0 else cast(T, self._entries[index])

    def remove(self, token: Token) -> T:
        """Remove and return the value; the token (and every copy of it) is stale from now on.

        Example:
            >>> slab: Slab[str] = Slab()
            >>> t = slab.insert("x")
            >>> slab.remove(t), t in slab
            ('x', False)
        """
        index = self._lookup(token)
        if index < 0:
            raise self._stale(token)
        value = cast(T, self._entries[index])
        self._entries[index] = _VACANT
        self._len -= 1
        generation = self._generations[index] + 1
        self._generations[index] = generation
        # Past MAX_GENERATION the slot is retired: it stays vacant and off the free list forever,
        # because wrapping to generation 1 could make an old token resolve to a new value.
        if generation <= MAX_GENERATION:
            self._free.append(index)
        return value

    def __contains__(self, token: object) -> bool:
        """True when ``token`` names a live value.

        Example:
            >>> slab: Slab[int] = Slab()
            >>> slab.insert(1) in slab, 0 in slab
            (True, False)
        """
        return self._lookup(token) >= 0

    def __len__(self) -> int:
        """The number of live values.

        Example:
            >>> len(Slab[int]())
            0
        """
        return self._len

    def __iter__(self) -> Iterator[Token]:
        """The live tokens, in slot order.

        Example:
            >>> slab: Slab[str] = Slab()
            >>> [token_index(t) for t in (slab.insert("a"), slab.insert("b"))] == [
            ...     token_index(t) for t in slab]
            True
        """
        generations = self._generations
        for index, entry in enumerate(self._entries):
            if entry is not _VACANT:
                yield Token((generations[index] << 32) | index)

    def items(self) -> Iterator[tuple[Token, T]]:
        """(token, value) pairs of the live values, in slot order.

        Example:
            >>> slab: Slab[str] = Slab()
            >>> t = slab.insert("a")
            >>> list(slab.items()) == [(t, "a")]
            True
        """
        generations = self._generations
        for index, entry in enumerate(self._entries):
            if entry is not _VACANT:
                yield Token((generations[index] << 32) | index), cast(T, entry)

    def __repr__(self) -> str:
        return f"<Slab: {self._len} live of {len(self._entries)} slots>"
