"""
Saxe's hierarchy: broad distinctions before fine ones
=====================================================

The canonical task of Saxe, McClelland & Ganguli (PNAS 2019): 8 items (one-hot inputs) with 15 binary
features from a balanced tree -- 1 shared by every item, 2 splitting them in halves, 4 in quarters, 8 naming
each item. The network maps R^8 -> R^15 through a hidden layer of 8 units, no padding (a rectangular Syx of
shape 15 x 8; theory/saxe.md, "Any shape"). Syx's singular values fall with the tree's depth, so the root
distinction is learned first, then the halves, then the quarters, then the items. (a) gradient descent from the
small aligned init (solid) over the exact per-mode theory (dashed), critical times dotted; (b) the same network
from a small gaussian init over the small-init stage theory (theory/saxe.md, "From a small random init"): the
same order. The margins are written below the figure. The spec ``sims/saxe_hierarchy.toml`` runs the same.
"""
from _gallery import SMALL, finish

from dynamics.experiments import parse_spec
from dynamics.experiments.shapes import EXPERIMENTS      # the spec's runner draws the figure

spec = parse_spec({"experiment": "saxe_hierarchy", "problem": {}, "run": {"lr": 0.05} if SMALL else {}})
lines = []
out = EXPERIMENTS[0].run(spec, progress=False, echo=lines.append)
finish(out["figures"]["saxe_hierarchy"], "saxe_hierarchy", "; ".join(lines))
