"""MedShapes: the embedded synthetic benchmark (seeded scenes of coloured shapes on textured
backgrounds, one dataset per imaging domain of the paper) that the demo and the tests use.

``shapes`` draws the primitives, ``scenes`` composes a domain's images and masks with the
attributes the prompts describe, ``synthetic`` writes the datasets in the reference's format.
"""
