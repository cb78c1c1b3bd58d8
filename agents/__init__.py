"""Training algorithms for sipenv problems: SIP, differentiable physics (DP), supervised and RL
baselines, on one training loop (:mod:`agents.trainer`) over problems built from env ids
(:mod:`agents.problems`), sharing networks, data, evaluation and checkpoints. Algorithms are
registered in :mod:`agents.registry`."""
