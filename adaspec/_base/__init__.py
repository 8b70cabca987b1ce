"""The bottom layer of ``adaspec``: config machinery and model facts that every module may use.

Nothing here imports from the rest of ``adaspec``; the public names are re-exported where users
have always found them (:mod:`adaspec.config`, :mod:`adaspec.modeling`).
"""
