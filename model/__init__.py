"""The fraud model's Python side: training, its feature definitions (the reference of
docs/feature-spec.md), the ablation, the replay and the original project's preprocessing.

A package of the repository root: run its programs from there as modules
(`.venv/bin/python -m model.train ...`), and import it as `model` (`from model import features`);
pytest puts the root on the path (pytest.ini).
"""
