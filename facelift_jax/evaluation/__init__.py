"""Evaluation: the evaluation sets, one scorer, one evaluator (one package, used in training and offline).

* ``datasets/`` — the evaluation sets: ``synthetic`` (the held-out synthetic set with exact
  truth: built and cached here, ``load_or_build``; and as an ``EvalSet``), ``dad3dheads``,
  ``multiface`` readers; ``datasets.load(spec, config)``.
* ``scoring`` — the one scorer (``score``; NME, NMLC, 3D and pose errors under one set of names,
  one ``EYE_CORNERS``), used for the model and the baselines alike.
* ``baselines`` — the template with the true pose; the 2D detector + PnP template fit.
* ``evaluator`` — ``Evaluator``: the held-out set predicted once per call, in the training loop
  (in-memory parameters) and offline (``python -m facelift_jax.evaluate`` on an export), with the
  same tables.
* ``report`` — the per-image path and its tables: every image of a set predicted and scored
  (``evaluate``), ``results.md`` / ``results.json`` / ``per_image.csv`` / ``examples.png``; the
  real-photo sets and ``--points 68`` go this way.
It depends on the model's output contract and the maths, never on the command-line modules.
"""
