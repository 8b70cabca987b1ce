"""The bottom layer of ``adaspec``: config machinery, model facts and atomic writes for every module.

Nothing here imports from the rest of ``adaspec``; the public names are re-exported where users
have always found them (:mod:`adaspec.config`, :mod:`adaspec.modeling`).
"""
