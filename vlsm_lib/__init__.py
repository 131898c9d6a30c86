"""vlsm_lib: transfer learning of vision-language segmentation models to medical images.

The library behind the study notebooks, by the stage the data passes through (each package
imports only from the ones above it):

- ``data``: datasets on disk (images, masks, annotations with P0..P9 prompts), the readers of
  the official downloads, MedShapes, prompt perturbations.
- ``models``: ``create_model`` over the registry, weights, train policies.
- ``engine``: training, evaluation, metrics, losses, the frozen-feature cache and store, bench,
  provenance.
- ``analysis``: gathered runs into paired comparisons, tables, effects, rankings and figures.
- ``reports``: HTML indexes and run pages.
- ``grid``: a params file into runs: plan, preflight, execution (local, Dask), kernels, progress.
- ``notebook``: the verbs the notebooks call and a run's own figures.
- ``cli``: the ``vlsm`` command.

``results`` (run ids, save, gather), ``locks`` (who owns a run folder), ``lifetime`` (pids and
watchers), ``files`` and ``paths`` sit above the stages: every stage may use them.

``vlsm_lib.load_model(path_or_name)`` gives a model that predicts a mask from an image and a
sentence (``engine.predict``).
"""

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name: str):
    """``vlsm_lib.load_model`` (``engine.predict``), imported on first use: ``import vlsm_lib``
    stays light."""
    if name == "load_model":
        from vlsm_lib.engine.predict import load_model

        return load_model
    raise AttributeError(f"module 'vlsm_lib' has no attribute {name!r}")
