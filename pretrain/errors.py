"""The one exception class of the pretraining package: a user-facing, one-paragraph message."""


class PretrainError(Exception):
    """Bad input (missing dataset, unreadable image, bad config, diverged loss, incompatible checkpoint).

    The message names the path or value, what was expected and how to fix it; CLIs print it and exit 2.
    """
