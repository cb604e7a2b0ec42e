"""The one exception for mistakes a user can make (paths, layouts, names, values).

The CLI turns it into one line on stderr and exit status 2; anything else is our bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem the user can fix. The message names the problem and the fix, in one line."""
