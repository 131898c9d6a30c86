"""Engine: one model and one dataset into trained weights and per-image scores.

Takes a ``SegModel`` (``models``) and datasets (``data``); hands on a fit's result and
checkpoint (``train``), per-image metric tables (``evaluate``, ``metrics``) and the facts of a
run's provenance (``provenance``). ``config`` validates training settings, ``losses`` builds the
loss, ``runtime`` sets up the device and CPU, ``feature_cache`` and ``feature_store`` keep the
outputs of frozen towers, ``bench`` times each model's step.
"""
