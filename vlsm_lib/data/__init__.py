"""Data: what lies on disk and how it is read.

Takes in image/mask folders (the official downloads through ``sources``, a user's own through
``importer``, or MedShapes drawn by ``medshapes``) and hands on datasets in the reference's
format (``<root>/<name>/{images, masks, anns/<split>.json}``) read as sample dicts
(``dataset``), with their P0..P9 prompts (``prompts``), perturbed prompts (``perturb``), and
the checks (``check``) and training augmentation (``augment``) around them.
"""
