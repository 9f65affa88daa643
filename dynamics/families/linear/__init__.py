"""The deep linear network shared by the JEPA, MAE and Saxe families: problems (paired covariances),
the network and its closed-form gradients, the per-mode exact theory, and the family implementation."""
