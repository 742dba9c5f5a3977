"""Suite-wide settings.

Hypothesis gives every example a 200 ms deadline by default and fails the test when one
takes longer. That is a timing assertion, and these machines are shared and noisy: under
load a property test of pure logic failed on it. Speed belongs in ``make bench``; here
every example may take as long as it takes.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("pghd", deadline=None)
settings.load_profile("pghd")
