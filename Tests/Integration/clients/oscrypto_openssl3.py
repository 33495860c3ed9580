"""Lets oscrypto 1.3.0 (PyScep's crypto backend) load OpenSSL 3.

oscrypto detects the libcrypto version with the pattern \\b(\\d\\.\\d\\.\\d[a-z]*)\\b, which cannot
match "OpenSSL 3.0.22" (two-digit patch), and then refuses to load: LibraryNotFoundError "Error
detecting the version of libcrypto". PyPI has no newer oscrypto. While oscrypto's backend is
imported, the pattern is widened to accept multi-digit components; nothing on disk is changed.
Import this module before PyScep.
"""
import re

_NARROW = r"\b(\d\.\d\.\d[a-z]*)\b"
_WIDE = r"\b(\d+\.\d+\.\d+[a-z]*)\b"
_original_search = re.search


def _search(pattern, string, flags=0):
    if pattern == _NARROW:
        pattern = _WIDE
    return _original_search(pattern, string, flags)


re.search = _search
try:
    import oscrypto.asymmetric  # noqa: F401  (loads the libcrypto backend)
finally:
    re.search = _original_search
