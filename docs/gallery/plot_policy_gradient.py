"""
Vanishing gradients in RL finetuning: RL against SFT
====================================================

Razin et al. (ICLR 2024): the expected policy gradient of an input vanishes with the standard deviation of
its reward under the model, so RL from a policy that rarely samples the correct output is extremely slow,
even far from the optimum, while supervised finetuning (SFT) is not. (a) A tabular softmax policy over
K = 50 outputs: the time to reach p = 1/2 from p0 against the initial reward std sqrt(p0 (1 - p0)), the
closed forms (lines, theory/policy_gradient.md) and the exact gradient flow of the full softmax policy
(marks: its critical times located by the solver). (b) A linear policy shared by 40 inputs whose features
overlap: a short SFT phase on 5 % of them, then RL, against RL alone (exact flow; dotted: the time the mean
reward reaches 1/2, the grey line). ``sims/policy_gradient_escape.toml`` runs the same settings.
"""
from _gallery import SMALL, finish

from dynamics.experiments import parse_spec
from dynamics.experiments.policy_gradient import EXPERIMENTS      # the spec's runner draws the figure

small = {"problem": {"p0": [0.1, 0.03], "n_inputs": 6, "d": 4, "p0_shared": 0.03}, "run": {"records": 40}}
spec = parse_spec({"experiment": "policy_gradient_escape", **(small if SMALL else {"problem": {}, "run": {}})})
out = EXPERIMENTS[0].run(spec, progress=False, echo=lambda line: None)
s = out["summary"]
finish(out["figures"]["policy_gradient_escape"], "policy_gradient",
       f"RL takes {s['ratio'][-1]:.0f}x SFT's time to p = 1/2 at p0 = {s['p0'][-1]:g} (flow's critical times within "
       f"{s['flow_critical_time_error']:.0e} of the closed forms); with shared features a short SFT phase on 5 % "
       f"of the inputs reaches mean reward 1/2 {s['sft_speedup']:.1f}x sooner than RL alone")
