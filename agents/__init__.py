"""Training algorithms for sipenv environments: SIP, differentiable physics (DP), supervised
and RL baselines, sharing networks, data, evaluation and checkpoints."""
