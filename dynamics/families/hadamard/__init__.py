"""The u * v machinery shared by diagonal linear networks and diagonal attention: the model and its
simulators (gd on (u, v), the exact small-init dual flow), the stage algorithm and its comparison."""
