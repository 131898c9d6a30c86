"""Miniature fakes of the official dataset downloads, in their layouts and encodings, for the
source preparers' tests."""
