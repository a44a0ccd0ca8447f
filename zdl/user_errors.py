"""The one exception every `zdl` command raises for a problem with what the user asked for.

In a module of its own, not in `zdl.cli`: run as `python -m zdl.cli`, that file is `__main__`, a second copy
whose own class the subcommands (which import `zdl.cli`) would never raise, so their errors would escape as
tracebacks.
"""


class UserError(Exception):
    """A problem with what the user asked for: reported as one line, no traceback."""
