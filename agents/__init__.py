"""Training algorithms for sipenv problems: SIP, differentiable physics (DP), supervised and RL
baselines, on one training loop (``agents.trainer``) over problems built from env ids
(``agents.problems``), sharing networks, data, evaluation and checkpoints. Algorithms are
registered in ``agents.registry``."""
