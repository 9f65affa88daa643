"""Deep linear networks trained on second moments: the machinery JEPA, MAE and Saxe regression share.

Network: encoder Wbar = W_L ... W_1 (``params["W"]`` has shape (L, d, d), ``W[0]`` = W_1) and, for the
SSL objectives, a head V (d, d); a network of another shape stores each layer in the top-left block of an n x n
slot, zero elsewhere (``slot_masks``; theory/saxe.md "Any shape").  Every objective here is

    loss = 1/2 E || A x - T y ||^2,   A = V Wbar (or Wbar without a head),            (1)

with the target map T = SG(Wbar) (JEPA, stop-gradient), T = I (MAE, regression), or T = the EMA
copy of the encoder (JEPA with an EMA target, simulator only).  In second moments,

    loss = 1/2 tr(A Sxx A^T) - tr(A Sxy T^T) + 1/2 tr(T Syy T^T),
    R    = A Sxx - T Syx,     dloss/dV = R Wbar^T,     dloss/dWbar = V^T R,
    dloss/dW_a = (W_L..W_{a+1})^T (dloss/dWbar) (W_{a-1}..W_1)^T                       (2)

(theory/jepa.md sec. 2).  The gradients are written in closed form (cheaper than autodiff and
shared with the finite-sample path, which uses the same formulas on empirical moments); a test checks
them against ``jax.grad`` of (1) with ``lax.stop_gradient``.

The exact per-mode theory for an aligned, balanced init is in ``theory.py``: each family gives
(k, n, scale, pref) of the reduced flow in ``exact.mode_integrals``; the family contract is in
``family.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ...core.keys import as_key, unstack_keys
from ...core.linalg import random_rotation
from ...core.validation import check_array, check_choice
from .problems import LinearProblem

__all__ = ["Objective", "prefixes", "encoder", "layer_grads", "loss_and_grads", "sample_loss", "init_params",
           "gaussian_draws", "INITS", "slot_masks", "head_shape", "layers", "pad"]

INITS = ("aligned", "aligned_gauge", "orthogonal", "gaussian")


@dataclass(frozen=True)
class Objective:
    """How one family instantiates (1): the target map, whether there is a head, and its theory.

    Theory: with x = v (per-layer mode, equal to the head mode), psi = x / scale(rho, L), the mode obeys
    d psi / d tau = psi^k (1 - psi^n) with t = pref(lam, rho, L) * tau, and the encoder mode is
    x^L = (scale psi)^L (see mode_integrals).
    """

    name: str
    target: str                 # "self" (stop-gradient encoder) or "identity"
    head: bool
    k: callable                 # L -> k
    n: callable                 # L -> n
    scale: callable             # (rho, L) -> scale of x
    pref: callable              # (lam, rho, L) -> time prefactor
    paper_units: bool = True    # whether time can be reported in the paper's units t_paper = L t

    def fixed_point(self, rho, L):
        return self.scale(rho, L) ** L


# ------------------------------------------------------------------------------------------ network
def prefixes(W):
    """[W_1, W_2 W_1, ..., W_L ... W_1]: every partial product, computed once (L - 1 matmuls)."""
    out = [W[0]]
    for a in range(1, W.shape[0]):
        out.append(W[a] @ out[-1])
    return out


_prefix_products = prefixes      # for layer_grads, whose argument of that name shadows the function


def encoder(W):
    """Wbar = W_L ... W_1 for W of shape (L, d, d)."""
    return prefixes(W)[-1]


def _nt(a, b):
    """a b^T as one product contracting the last axes of both: XLA:CPU's dot kernels read b^T in place
    (a transposed *left* operand, by contrast, runs at about half their speed)."""
    return jax.lax.dot_general(a, b, (((a.ndim - 1,), (b.ndim - 1,)), ((), ())))


def _written_T(x):
    """x^T, written out once: the barrier keeps XLA from folding the transpose into the product that
    reads it (which would make it a transposed-left-operand product, the slow kind; see _nt)."""
    return jax.lax.optimization_barrier(x.T)


def layer_grads(W, G, prefixes=None, *, GT=None):
    """dloss/dW_a from G = dloss/dWbar, equation (2): (W_L..W_{a+1})^T G (W_{a-1}..W_1)^T.

    Computed transposed, so that every product is a plain one (no transposed operand): with
    T_L = G^T and T_{a-1} = T_a W_a (= ((W_L..W_a)^T G)^T),

        dloss/dW_a = (P_{a-1} T_a)^T,   P_{a-1} = W_{a-1}..W_1 (the forward prefixes),   dloss/dW_1 = T_1^T,

    2L - 1 products as before.  The final transposes are left to whoever reads the gradients (the
    optimizer's element-wise update folds them in); barriers keep XLA from folding them back into the
    products.  Pass ``prefixes`` from the forward pass, and ``GT`` = G^T when the caller has it.
    Measured in the simulator: 1.19-1.50x the run-steps per second of the direct form (64 runs,
    d = 16-128; benchmarks/results/performance.md, "What made the step fast").
    """
    L = W.shape[0]
    prefixes = _prefix_products(W) if prefixes is None else prefixes
    T = _written_T(G) if GT is None else GT
    grads_T = [None] * L
    for a in range(L - 1, 0, -1):
        grads_T[a] = prefixes[a - 1] @ T
        T = T @ W[a]
    grads_T[0] = T
    return jnp.stack([jax.lax.optimization_barrier(g).T for g in grads_T])


def _target(objective, Wbar, aux, d, dtype):
    if objective.target == "identity":
        return jnp.eye(d, dtype=dtype)
    if aux and "W" in aux:
        return jax.lax.stop_gradient(encoder(aux["W"]))
    return jax.lax.stop_gradient(Wbar)


def loss_and_grads(objective, params, aux, Sxx, Syx, Syy, *, full_loss=True):
    """Population loss (1) and closed-form gradients (2) from second moments.

    Work per step: L - 1 matmuls for the encoder products (reused by the layer gradients), the
    residual R with the fewest products (MAE: T = I needs no T Syx; JEPA: Wbar Sxx and Wbar Syx, each one
    (runs x d) x d product with the problem's matrix shared by every run), 2 for the head, 2L - 1 for the
    layer gradients: 3L + 2 d x d products for JEPA.  Every product is a plain one (no transposed left
    operand; see ``layer_grads``), and R^T is written out once for G^T = R^T V.
    ``full_loss=False`` returns, instead of the loss, the divergence sentinel 1/2 ||R||_F^2 (finite
    exactly as long as the loss is, up to the overflow scale), which saves the products A = V Wbar
    (JEPA) and T Syy that only the loss needs; the engine uses it for its per-step divergence check.
    """
    W = params["W"]
    d = W.shape[-1]
    pre = prefixes(W)
    Wbar = pre[-1]
    V = params["V"] if objective.head else None
    T = _target(objective, Wbar, aux, d, W.dtype)
    if objective.target == "identity":
        A = V @ Wbar if objective.head else Wbar
        TSyx = Syx
        ASxx = A @ Sxx
    elif aux and "W" in aux:
        A = V @ Wbar
        TSyx = T @ Syx
        ASxx = A @ Sxx
    else:                               # JEPA with T = SG(Wbar)
        WSxx, TSyx = Wbar @ Sxx, jax.lax.stop_gradient(Wbar @ Syx)
        A = None                        # V Wbar: only the loss needs it
        ASxx = V @ WSxx
    R = ASxx - TSyx
    if full_loss:
        A = V @ Wbar if A is None else A
        loss = 0.5 * jnp.sum(ASxx * A) - jnp.sum(TSyx * A)
        loss = loss + 0.5 * (jnp.trace(Syy) if objective.target == "identity" else jnp.sum((T @ Syy) * T))
    else:
        # the divergence sentinel: 1/2 ||R||_F^2 overflows at the scale the loss does, without a matmul
        loss = 0.5 * jnp.sum(R * R)
    # G = dloss/dWbar = V^T R, passed on transposed (G^T = R^T V: plain products only, see layer_grads)
    RT = _written_T(R)
    if objective.head:
        grads = {"W": layer_grads(W, None, pre, GT=RT @ V), "V": _nt(R, Wbar)}
    else:
        grads = {"W": layer_grads(W, None, pre, GT=RT)}
    return loss, grads


def sample_loss(objective, params, aux, x, y):
    """Finite-sample loss (1), 1/(2n) sum ||A x_i - T y_i||^2, written directly for autodiff checks."""
    W = params["W"]
    Wbar = encoder(W)
    A = params["V"] @ Wbar if objective.head else Wbar
    T = _target(objective, Wbar, aux, W.shape[-1], W.dtype)
    r = x @ A.T - y @ T.T
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))


# ------------------------------------------------------------------------------------------ init
def _normal_draws(key, L, d):
    keys = jax.random.split(key, L + 2)
    return (jax.random.normal(keys[0], (L, d, d), dtype=jnp.float64),
            jax.random.normal(keys[L], (d, d), dtype=jnp.float64))


#: The "gaussian" init's standard normal draws, (L, d, d) and (d, d), from split(key, L + 2)[0] and [L]:
#: one compiled program per run (op by op, each run's init dispatched ~6 small programs).
_gaussian_draws = partial(jax.jit, static_argnums=(1, 2))(_normal_draws)


def gaussian_draws(keys, L, d):
    """``_gaussian_draws`` for a batch of keys (a key array of shape (R,)), as numpy arrays (R, L, d, d)
    and (R, d, d): every run's program dispatched before any result is read, so that the host waits
    once, not per run.  (Measured, 64 runs of L = 3, d = 32: 7.8 ms; one vmapped program 2.8 ms, but it
    compiles for 1.0 s against 0.5 s: a loss for all but long sessions.)"""
    out = [_gaussian_draws(k, L, d) for k in unstack_keys(keys)]
    return np.stack([np.asarray(w) for w, _ in out]), np.stack([np.asarray(v) for _, v in out])


def head_shape(problem: LinearProblem, objective: Objective):
    """(rows, columns) of the head: JEPA's predictor k x k, MAE's decoder d x k (k the encoder's output)."""
    k = problem.layer_shapes()[-1][0]
    return (k, k) if objective.target == "self" else (problem.d_out, k)


def slot_masks(problem: LinearProblem, objective: Objective):
    """(L, n, n) and (n, n) 0/1 masks of the layers' and the head's blocks in their n x n slots (theory/saxe.md,
    "Any shape"): entries outside them start at zero and stay zero under gradient descent and the flow (their
    gradients are products with zero rows or columns), so the padded network is exactly the rectangular one."""
    n = problem.n
    W = np.zeros((problem.depth, n, n))
    for a, (r, c) in enumerate(problem.layer_shapes()):
        W[a, :r, :c] = 1.0
    V = np.zeros((n, n))
    r, c = head_shape(problem, objective)
    V[:r, :c] = 1.0
    return W, V


def pad(M, n):
    """M (r, c) in the top-left block of an n x n zero matrix (a no-op where M is already n x n)."""
    M = np.asarray(M, float)
    if M.shape == (n, n):
        return M
    out = np.zeros((n, n))
    out[:M.shape[0], :M.shape[1]] = M
    return out


def layers(problem: LinearProblem, params, objective: Objective | None = None):
    """The network's layers in their own shapes from (padded) parameters: {"W": [W_1 (h_1, d_in), ...,
    W_L], "V": the head} -- ``params`` one run's (``sim.params`` of a snapshot, an init dict)."""
    W = np.asarray(params["W"])
    out = {"W": [W[..., a, :r, :c] for a, (r, c) in enumerate(problem.layer_shapes())]}
    if "V" in params:
        r, c = head_shape(problem, objective) if objective is not None else (problem.n, problem.n)
        out["V"] = np.asarray(params["V"])[..., :r, :c]
    return out


def _custom_init(problem, objective, init):
    """A dict of arrays: the square network's (L, d, d) stack, or for any shape a list of the layers in their
    own shapes (or their padded (L, n, n) stack, zero outside the blocks)."""
    L, n = problem.depth, problem.n
    allowed = {"W", "V"} if objective.head else {"W"}
    extra = sorted(set(init) - allowed, key=str)
    if extra:
        raise ValueError(f"init has key(s) {extra} that {objective.name} does not have: its parameters are "
                         f"{sorted(allowed)}")
    Wm, Vm = slot_masks(problem, objective)
    shapes = problem.layer_shapes()
    W = init.get("W")
    if isinstance(W, (list, tuple)):
        if len(W) != L:
            raise ValueError(f"init['W'] must list depth = {L} layers, got {len(W)}")
        W = np.stack([pad(check_array(f"init['W'][{a}]", w, shape=shapes[a]), n) for a, w in enumerate(W)])
    else:
        want = "a list of the layers, or" if problem.plain else f"a list of the layers of shapes {shapes}, or"
        W = check_array("init['W']", W, shape=(L, n, n)) if W is not None else None
        if W is None:
            raise ValueError(f"init['W'] is required: {want} an (L, n, n) = {(L, n, n)} stack")
    if np.any(W * (1 - Wm)):
        raise ValueError(f"init['W'] has nonzero entries outside the layers' blocks {shapes} of the {n} x {n} slots")
    out = {"W": W}
    if objective.head:
        hs = head_shape(problem, objective)
        V = check_array("init['V']", init.get("V"), ndim=2)
        if V.shape == hs:
            V = pad(V, n)
        elif V.shape != (n, n):
            raise ValueError(f"init['V'] must have shape {hs} (or its padded {(n, n)}), got {V.shape}")
        if np.any(V * (1 - Vm)):
            raise ValueError(f"init['V'] has nonzero entries outside the head's {hs} block")
        out["V"] = V
    return out


def init_params(problem: LinearProblem, objective: Objective, init="aligned", *, key, draws=None):
    """Initial parameters for one run (numpy, float64), every layer in its n x n slot (n = d for the square
    network; theory/saxe.md, "Any shape").

    "aligned": W_a = V = eps^(1/L) I (aligned with any basis, balanced: the theory's init); where the problem
        has a right basis V_r (a regression's non-symmetric Syx), W_1 = eps^(1/L) U V_r^T instead.  For any other
        shape: feature K_j (the kept features, ``problem.kept`` or the family's prediction) runs through hidden
        unit j, W_1 = s sum_j e_j v_Kj^T, W_a = s sum_j e_j e_j^T, W_L = s sum_j o_j e_j^T with o_j = u_Kj, or e_j for
        an SSL embedding (embed_dim); JEPA's head s sum_j o_j o_j^T, MAE's s sum_j u_Kj o_j^T.
    "aligned_gauge": W_a = eps^(1/L) O_a O_{a-1}^T with O_0 = O_L = I and random orthogonal O_1..O_{L-1}:
        dense hidden layers, same end-to-end map and same mode dynamics (an orthogonal gauge; square only).
    "orthogonal": W_a, V = eps^(1/L) x independent random (semi-)orthogonal matrices (balanced where square).
    "gaussian": i.i.d. N(0, eps^(2/L) / fan_in) entries (neither balanced nor aligned).
    A dict {"W": (L, d, d)[, "V": (d, d)]} is taken as given (any shape: a list of the layers).
    ``draws``: the "gaussian" init's standard normals (W, V) when already drawn from ``key`` by
    :func:`gaussian_draws` for a batch (``key`` is then not used again).
    """
    L, d, eps = problem.depth, problem.d, problem.init_scale
    if isinstance(init, dict):
        return _custom_init(problem, objective, init)
    check_choice("init", init, set(INITS))
    if not problem.plain:
        return _shaped_init(problem, objective, init, key=key, draws=draws)
    s = eps ** (1.0 / L)
    key = as_key(key) if draws is None else key
    if init == "aligned":
        W = np.stack([s * np.eye(d)] * L)
        V = s * np.eye(d)
    elif init == "gaussian":
        W, V = (np.asarray(x) for x in (_gaussian_draws(key, L, d) if draws is None else draws))
        W, V = s / np.sqrt(d) * W, s / np.sqrt(d) * V
    elif init == "aligned_gauge":
        keys = unstack_keys(jax.random.split(key, L + 2))     # indexing a key array costs ~0.1 ms a key
        O = [np.eye(d)] + [random_rotation(d, key=keys[a]) for a in range(1, L)] + [np.eye(d)]
        W = np.stack([s * O[a + 1] @ O[a].T for a in range(L)])
        V = s * np.eye(d)
    else:       # "orthogonal"
        keys = unstack_keys(jax.random.split(key, L + 2))
        W = np.stack([s * random_rotation(d, key=keys[a]) for a in range(L)])
        V = s * random_rotation(d, key=keys[L])
    if init in ("aligned", "aligned_gauge") and problem.has_right_basis:
        # input side in its own basis V (theory/saxe.md, "Any Syx"): W_1 <- W_1 U V^T keeps every layer balanced
        # and makes Wbar(0) = eps U V^T, aligned with Syx = U diag(lam) V^T
        W = W.copy()
        W[0] = W[0] @ (problem.basis @ problem.right_basis.T)
    return {"W": W, "V": V} if objective.head else {"W": W}


def _shaped_init(problem, objective, init, *, key, draws):
    """``init_params`` for a network of any shape (rectangular layers, a bottleneck): see there."""
    L, n, eps = problem.depth, problem.n, problem.init_scale
    s = eps ** (1.0 / L)
    shapes = problem.layer_shapes()
    hr, hc = head_shape(problem, objective)
    W, V = np.zeros((L, n, n)), np.zeros((n, n))
    if init == "aligned":
        from .bottleneck import kept_features       # the default kept set is the family's prediction (theory)
        K = kept_features(objective, problem)
        m = K.size
        vin = problem.right_basis[:, K]                             # (d_in, m): the kept features' input directions
        uout = problem.basis[:, K]                                  # (d_out, m)
        E = np.eye(n)[:, :m]                                        # hidden unit j carries feature K_j
        # the encoder's output: the features' own directions, or unit j of an SSL embedding R^k
        enc_out = uout if problem.embed_dim is None else E[:problem.embed_dim]
        for a, (r, c) in enumerate(shapes):
            left = enc_out if a == L - 1 else E[:r]
            right = vin if a == 0 else E[:c]
            W[a, :r, :c] = s * left @ right.T
        if objective.head:          # JEPA's predictor maps the embedding to itself, MAE's decoder back to y
            V[:hr, :hc] = s * ((uout if objective.target == "identity" else enc_out) @ enc_out.T)
    elif init == "gaussian":
        Z, ZV = (np.asarray(x) for x in (_gaussian_draws(as_key(key), L, n) if draws is None else draws))
        for a, (r, c) in enumerate(shapes):
            W[a, :r, :c] = s / np.sqrt(c) * Z[a, :r, :c]
        V[:hr, :hc] = s / np.sqrt(hc) * ZV[:hr, :hc]
    elif init == "orthogonal":
        keys = unstack_keys(jax.random.split(as_key(key), L + 2))
        for a, (r, c) in enumerate(shapes):
            W[a, :r, :c] = s * random_rotation(max(r, c), key=keys[a])[:r, :c]
        V[:hr, :hc] = s * random_rotation(max(hr, hc), key=keys[L])[:hr, :hc]
    else:
        raise ValueError(f"init={init!r} needs the square network (every layer d x d); this one has layers "
                         f"{shapes}: use 'aligned', 'gaussian', 'orthogonal' or a dict of arrays")
    return {"W": W, "V": V} if objective.head else {"W": W}
