"""Notebook: what the study notebooks call, one verb per cell.

``verbs`` sets a run up, reads its parameters, builds its model and data and saves it (with
its provenance); ``plots`` draws a run's own figures (training curves, predictions, the
MedShapes contact sheet); ``qualitative`` saves and loads the examples of the paper's Fig. 4.
"""
