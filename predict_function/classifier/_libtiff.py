"""Keep libtiff's error messages out of the function's logs.

Pillow decodes compressed TIFFs with libtiff, which prints its errors (a corrupt strip: "ZIPDecode:
Decoding error ...", or an entry of unknown type in a file that still decodes) to the C stderr,
where each becomes a plain-text line among the JSON logs. Pillow silences libtiff's warnings
(its decoder sets TIFFSetWarningHandler(NULL)) but has no switch for errors, so this sets the
error handlers of the libtiff Pillow loaded to NULL, once at cold start. The decode still fails
as before: the request is answered 422 and logged as one JSON line.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

_SETTERS = ("TIFFSetErrorHandler", "TIFFSetErrorHandlerExt")


def loaded_libtiff(maps: str = "/proc/self/maps") -> str | None:
    """The path of the libtiff mapped into this process (Pillow's own, e.g. pillow.libs/libtiff-*.so.6)."""
    try:
        with open(maps, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
                path = fields[5].rstrip("\n") if len(fields) == 6 else ""
                if os.path.basename(path).startswith("libtiff"):
                    return path
    except OSError:  # no /proc (not Linux): nothing found
        return None
    return None


def silence_errors(path: str | None = None) -> bool:
    """Set libtiff's error handlers to NULL; False (and nothing changed) when no libtiff is loaded."""
    path = path or loaded_libtiff()
    if path is None:
        return False
    try:
        library = ctypes.CDLL(path)  # already loaded by Pillow's _imaging: the same handle
    except OSError as exc:
        log.warning("libtiff errors stay on stderr: cannot open %s (%s)", path, exc)
        return False
    for name in _SETTERS:
        setter = getattr(library, name, None)
        if setter is not None:
            setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
            setter(None)
    return True
