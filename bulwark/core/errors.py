"""The root of the package's own errors.

Every failure the package raises on purpose derives from :class:`BulwarkError`, whose message is fit
to show a person on one line: the command line prints it as ``bulwark: error: <message>`` and never
a traceback. Catching ``BulwarkError`` catches them all.
"""

from __future__ import annotations


class BulwarkError(Exception):
    """A failure with a message fit to show a person on one line."""
