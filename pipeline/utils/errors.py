"""The base of every error the pipeline raises for bad input or set-up (not for its own bugs).

Stages catch it and print its message, which names the file, the row and what is wrong,
instead of a traceback.
"""


class PipelineError(Exception):
    """Bad input, bad params or missing set-up; the message says what and where."""


def from_worker(exc: PipelineError) -> PipelineError:
    """``exc`` with the message it was raised with, when it crossed from a DataLoader worker process.

    torch raises a worker's error again in the main process with the worker's traceback as its
    message ("Caught DataError in DataLoader worker process 0. Original Traceback ..."), whose last
    line is "module.Class: message". An error raised in this process is returned as it is.
    """
    text = str(exc)
    if "Original Traceback" not in text:
        return exc
    message = text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    try:
        return type(exc)(message)
    except TypeError:  # an error class whose constructor takes more than the message
        return PipelineError(message)
