"""Reports: run folders into HTML pages.

Takes run folders (``run.json``, tables, figures) and a suite's ``progress.json``; hands on
``outputs/index.html`` and each study's index (``index``) and each run's notebook rendered to
HTML (``run_page``).
"""
