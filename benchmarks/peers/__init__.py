"""Reference implementations and runners of the peer libraries timed by ``bench_peers.py``."""
