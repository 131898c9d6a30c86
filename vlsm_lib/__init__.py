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
"""

__version__ = "0.1.0"
