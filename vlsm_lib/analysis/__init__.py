"""Analysis: gathered per-image tables of complete runs into findings.

Takes the table ``results.gather`` builds; hands on the paired comparisons and their tests
(``stats``), Table 2 and the other tables (``tables``), prompt effects (``effects``), model
rankings (``ranking``), transfer modes and the reference's faults (``transfer``) and the
study's figures (``figures``). Nothing here trains or runs a model.
"""
