"""The one exception class of the transfer package: a user-facing, one-paragraph message."""


class TransferError(Exception):
    """Bad input to conversion or fine-tuning (checkpoint, weights path, dataset, config).

    The message names the path or value, what was expected and how to fix it; CLIs print it and exit 2.
    """
