"""Slab: generational tokens, checked against a dict model under any operation sequence."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from horizon_core.errors import StaleTokenError
from horizon_core.slab import (
    MAX_GENERATION,
    Slab,
    Token,
    token_generation,
    token_index,
)


class SlabMachine(RuleBasedStateMachine):
    """The slab must behave like a dict of live tokens, and a dead token must never resolve."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.slab: Slab[int] = Slab()
        self.model: dict[Token, int] = {}
        self.dead: set[Token] = set()

    @rule(target=tokens, value=st.integers())
    def insert(self, value: int) -> Token:
        token = self.slab.insert(value)
        assert token not in self.model
        assert token not in self.dead  # a token is never issued twice
        assert token_generation(token) >= 1
        self.model[token] = value
        return token

    @rule(token=tokens)
    def remove(self, token: Token) -> None:
        if token in self.model:
            assert self.slab.remove(token) == self.model.pop(token)
            self.dead.add(token)
        else:
            with pytest.raises(StaleTokenError, match=f"index {token_index(token)}, gen"):
                self.slab.remove(token)

    @rule(token=tokens)
    def get(self, token: Token) -> None:
        if token in self.model:
            assert self.slab.get(token) == self.model[token]
            assert self.slab.try_get(token) == self.model[token]
        else:
            message = f"generation {token_generation(token)}"
            with pytest.raises(StaleTokenError, match=message):
                self.slab.get(token)
            assert self.slab.try_get(token) is None

    @invariant()
    def matches_model(self) -> None:
        assert len(self.slab) == len(self.model)
        assert set(self.slab) == set(self.model)
        assert dict(self.slab.items()) == self.model
        for token in self.dead:
            assert token not in self.slab
            assert self.slab.try_get(token) is None


SlabMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
TestSlabMachine = SlabMachine.TestCase


def test_token_layout() -> None:
    slab: Slab[str] = Slab()
    first = slab.insert("a")
    assert (token_index(first), token_generation(first)) == (0, 1)
    assert first == (1 << 32) | 0
    second = slab.insert("b")
    assert (token_index(second), token_generation(second)) == (1, 1)


def test_token_zero_is_never_valid() -> None:
    slab: Slab[str] = Slab()
    slab.insert("a")
    assert Token(0) not in slab
    with pytest.raises(StaleTokenError):
        slab.get(Token(0))


def test_remove_bumps_generation_and_reuses_lifo() -> None:
    slab: Slab[str] = Slab()
    a, b, c = slab.insert("a"), slab.insert("b"), slab.insert("c")
    slab.remove(a)
    slab.remove(c)
    reused = slab.insert("d")  # last freed first
    assert token_index(reused) == token_index(c)
    assert token_generation(reused) == 2
    assert slab.insert("e") == Token((2 << 32) | token_index(a))
    assert slab.get(b) == "b"
    with pytest.raises(StaleTokenError) as info:
        slab.get(c)
    assert str(info.value) == (
        f"token {c:#x} (index 2, generation 1) is stale: slot 2 was removed and is now at generation 2"
    )
    assert isinstance(info.value, KeyError)


def test_never_issued_token() -> None:
    slab: Slab[str] = Slab()
    with pytest.raises(StaleTokenError, match=r"index 5, generation 1\) was never issued"):
        slab.get(Token((1 << 32) | 5))
    t = slab.insert("a")
    # Right index, a generation from the future.
    with pytest.raises(StaleTokenError, match="never issued"):
        slab.get(Token(t + (1 << 32)))


def test_exhausted_generation_is_retired() -> None:
    slab: Slab[str] = Slab()
    token = slab.insert("a")
    slab.remove(token)
    # Fast-forward slot 0 to its last generation instead of 2**32 inserts.
    slab._generations[0] = MAX_GENERATION
    last = slab.insert("b")
    assert token_index(last) == 0
    assert token_generation(last) == MAX_GENERATION
    assert slab.remove(last) == "b"
    fresh = slab.insert("c")
    assert token_index(fresh) == 1  # slot 0 is never reused
    assert token_generation(fresh) == 1
    assert last not in slab
    with pytest.raises(StaleTokenError, match="slot 0 is retired"):
        slab.get(last)
    assert list(slab) == [fresh]


@pytest.mark.parametrize("bad", [-1, 2**64, 1.0, "1", None, True])
def test_non_tokens(bad: object) -> None:
    slab: Slab[int] = Slab()
    slab.insert(1)
    assert bad not in slab
    with pytest.raises(StaleTokenError):
        slab.get(bad)  # type: ignore[arg-type]
    assert slab.try_get(bad) is None  # type: ignore[arg-type]
    with pytest.raises(StaleTokenError):
        slab.remove(bad)  # type: ignore[arg-type]


def test_none_is_a_storable_value() -> None:
    slab: Slab[None] = Slab()
    token = slab.insert(None)
    assert token in slab
    assert slab.get(token) is None
    assert len(slab) == 1


def test_iteration_is_in_slot_order() -> None:
    slab: Slab[str] = Slab()
    tokens = [slab.insert(str(i)) for i in range(5)]
    slab.remove(tokens[1])
    slab.remove(tokens[3])
    assert list(slab) == [tokens[0], tokens[2], tokens[4]]
    assert [v for _, v in slab.items()] == ["0", "2", "4"]
    assert "3 live of 5 slots" in repr(slab)
