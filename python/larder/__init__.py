"""larder for Python: stable cache keys, a memo cache shared by every worker, and envelope
encryption — the Rust larder crates, byte for byte the same formats.

>>> import larder
>>> larder.KeySpace("loan_calc", 1).key({"user_id": 7, "amount_won": 5000000})
'loan_calc:v1:k643e2wvx7rcsfyuy3tqyfbuykeoyfkm'

* Keys: :class:`KeySpace` (``docs/key-format.md``; every type and its Rust twin is listed in
  ``docs/python.md``), :func:`stable` for dataclasses / NamedTuples / pydantic models / Enums,
  width markers :data:`u8` … :data:`i128`, :data:`f32`, :data:`char` (in
  ``typing.Annotated[int, larder.u32]`` or called: ``larder.u32(7)``), :func:`option`,
  :func:`ok`, :func:`err`.
* Memo: :func:`memoize` on the cache from ``LARDER_CACHE`` (:func:`default_cache`) or a
  :class:`Cache` of your own.
* Envelope: :class:`Envelope` with :class:`LocalKeyring` or :class:`AwsKmsKeyring`;
  :mod:`larder.mask`.
* Blind indexes (exact-match search over an encrypted column, ``docs/blind-index.md``):
  :func:`blind_index` under a :class:`BlindIndexKey` (or a :class:`LocalKeyring`'s index key),
  giving a :class:`BlindIndex`; :func:`normalize` for removing false positives.

Errors: everything larder raises derives from :class:`LarderError`
(:class:`KeyEncodingError`, :class:`CacheError`, :class:`EnvelopeError` with
:class:`EncryptionError`, :class:`DecryptionError`, :class:`KeyringError`; :class:`MaskError`;
:class:`BlindIndexError`);
a value of the wrong Python type is a :class:`TypeError` that names the type and the fix.
"""

from . import _larder, mask
from ._larder import (
    AwsKmsKeyring,
    BlindIndex,
    BlindIndexError,
    BlindIndexKey,
    Cache,
    CacheError,
    DecryptionError,
    EncryptionError,
    Envelope,
    EnvelopeError,
    KeyEncodingError,
    KeyringError,
    KeySpace,
    LarderError,
    LocalKeyring,
    MaskError,
    Typed,
    Width,
    blind_index,
    cbor_dumps,
    cbor_loads,
    char,
    err,
    f32,
    f64,
    i8,
    i16,
    i32,
    i64,
    i128,
    normalize,
    ok,
    option,
    u8,
    u16,
    u32,
    u64,
    u128,
)
from ._memo import default_cache, memoize
from ._stable import skip, stable

__version__ = _larder.__version__

# Nothing to do at fork: the Rust core notices a fork by itself (larder-fork's pthread_atfork
# generation) and gives the child its own data keys, nonce generator, runtimes and connections.

__all__ = [
    "AwsKmsKeyring",
    "BlindIndex",
    "BlindIndexError",
    "BlindIndexKey",
    "Cache",
    "CacheError",
    "DecryptionError",
    "EncryptionError",
    "Envelope",
    "EnvelopeError",
    "KeyEncodingError",
    "KeySpace",
    "KeyringError",
    "LarderError",
    "LocalKeyring",
    "MaskError",
    "Typed",
    "Width",
    "__version__",
    "blind_index",
    "cbor_dumps",
    "cbor_loads",
    "char",
    "default_cache",
    "err",
    "f32",
    "f64",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "mask",
    "memoize",
    "normalize",
    "ok",
    "option",
    "skip",
    "stable",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
]
