"""The bottom layer: registries, atomic writes, hashing, paths, progress bars and the errors a user can cause.

Nothing here imports any other part of the suite.
"""
