"""The base of every error the pipeline raises for bad input or set-up (not for its own bugs).

Stages catch it and print its message, which names the file, the row and what is wrong,
instead of a traceback.
"""


class PipelineError(Exception):
    """Bad input, bad params or missing set-up; the message says what and where."""
