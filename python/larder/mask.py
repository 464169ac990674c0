"""Masking for display: what a support screen shows instead of the decrypted value.

>>> from larder import mask
>>> mask.phone("010-1234-5678")
'010-****-5678'

Each function raises :class:`larder.MaskError` for input it does not recognize (never returns
the input unmasked).
"""

from __future__ import annotations

from . import _larder

__all__ = ["email", "name", "phone"]


def phone(value: str) -> str:
    """Masks a Korean or E.164 phone number, keeping the area code and the last four digits:
    ``"010-1234-5678"`` → ``"010-****-5678"``."""
    return _larder.mask_phone(value)


def email(value: str) -> str:
    """Masks the local part of an e-mail address, keeping its first character and the domain."""
    return _larder.mask_email(value)


def name(value: str) -> str:
    """Masks a person's name, keeping its first and last characters (``"홍길동"`` → ``"홍*동"``)."""
    return _larder.mask_name(value)
