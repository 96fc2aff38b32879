"""The one exception type for problems a user can fix; scripts turn it into a message and exit 2."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (paths, data, checkpoint, options), explained in words."""
