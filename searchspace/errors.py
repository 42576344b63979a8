"""The one exception type for problems a user can fix (a bad file, value or budget).

The CLI turns it into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
Imports nothing from the project.
"""


class NasError(Exception):
    """A user-fixable problem; its message is one line that names the file, key and allowed values."""
