from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postwise.tracking.tokens import TokenKind, TokenSigner

SIGNER = TokenSigner(b"secret")


@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=4))
def test_round_trip(values: list[int]) -> None:
    token = SIGNER.sign(TokenKind.UNSUBSCRIBE, *values)
    assert token == token.lower() and token.isalnum()
    assert SIGNER.verify(TokenKind.UNSUBSCRIBE, token) == tuple(values)
    assert SIGNER.verify(TokenKind.UNSUBSCRIBE, token.upper()) == tuple(values)  # case-folded VERP


@given(st.integers(min_value=0, max_value=2**40), st.data())
def test_any_change_is_refused(value: int, data: st.DataObject) -> None:
    token = SIGNER.sign(TokenKind.CLICK, value, 3)
    at = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
    tampered = token[:at] + replacement + token[at + 1 :]
    if tampered != token:
        assert SIGNER.verify(TokenKind.CLICK, tampered) is None
    assert SIGNER.verify(TokenKind.CLICK, token[:-1]) is None
    assert SIGNER.verify(TokenKind.OPEN, token) is None  # another purpose
    assert TokenSigner(b"other").verify(TokenKind.CLICK, token) is None


@given(st.text(max_size=60))
def test_garbage_is_none(text: str) -> None:
    assert SIGNER.verify(TokenKind.BOUNCE, text) is None
