"""
A narrow JEPA and a narrow MAE keep different features
======================================================

An encoder into R^2 (``embed_dim=2``) must choose 2 of 4 features. Here the features' covariances lam =
(3, 2.5, 0.5, 0.4) and regression coefficients rho = (0.3, 0.35, 0.9, 1) order them in opposite ways: MAE, a
regression through a rank-2 map, keeps the largest lam * rho (features 0 and 1: reduced-rank regression), JEPA
the largest rho (features 2 and 3; theory/jepa.md, "A narrow encoder"): JEPA learns the large-lam features
first and then lets the large-rho ones displace them, and a seed may lose a direction for good (its predictor's
eigenvalue there <= 0: a dimensional collapse, keeping a subset). Each panel: the exact flow from small
gaussian inits, one thin line per seed and feature (the encoder's gain on the feature over its fixed point),
the aligned theory of the predicted kept features dashed, their critical times dotted. The margin (how many
seeds keep exactly the predicted set, a subset of it, or another set) is written below the figure. The spec
``sims/narrow_jepa_mae.toml`` runs the same.
"""
from _gallery import SMALL, finish

from dynamics.experiments import parse_spec
from dynamics.experiments.shapes import EXPERIMENTS      # the spec's runner draws the figure

small = {"problem": {}, "run": {"seeds": 2, "horizon": 15.0, "records": 80, "rtol": 1e-6}}
spec = parse_spec({"experiment": "narrow_jepa_mae", **(small if SMALL else {"problem": {}, "run": {}})})
lines = []
out = EXPERIMENTS[1].run(spec, progress=False, echo=lines.append)
finish(out["figures"]["narrow_jepa_mae"], "narrow_jepa_mae", "; ".join(lines))
