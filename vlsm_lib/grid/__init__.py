"""Grid: a params file into executed runs.

Takes ``params/<suite>/<study>.yaml``; checks it before anything runs (``preflight``), expands
it into runs with ids and dependencies (``runner``), executes each run's notebook with papermill
in a kernel (``execute``, ``kernels``, ``forkserver``), one after another or on a Dask cluster
(``cluster``), and hands on run folders, ``progress.json`` and the reports. ``estimate`` says
how long a grid takes from bench numbers.
"""
