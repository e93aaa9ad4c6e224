"""What the tests of the lab self-checks share (``recsys_workshop.labchecks``)."""

from __future__ import annotations

import pytest


def fails(check, *args, match: str, **kwargs) -> str:
    """The message of the ``AssertionError`` that ``check(*args, **kwargs)`` raises; it must contain ``match``."""
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert match in message, message
    return message
