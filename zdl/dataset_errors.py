"""The two ways loading a data set fails, shared by the IDX reader, the book's pickle reader and the downloader."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data file exists but is not valid (IDX or the book's mnist.pkl), or a download did not match its checksum."""


class DatasetNotFoundError(FileNotFoundError):
    """The four files are nowhere to be found and could not be downloaded."""
