"""Email addresses written in a chat message.

One pattern for the chat service (digits inside an address are not a sign-in code) and the scripted agent (an
address is not a date or a count). Every part is bounded as RFC 5321 bounds it (a local part of at most 64
characters, labels of at most 63, a few of them), so that a 4,000-character message without an address costs a
linear scan, not one scan per starting position.
"""

from __future__ import annotations

import re

EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,63}")
