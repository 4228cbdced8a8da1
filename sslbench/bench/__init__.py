"""Benchmarks: training throughput (sslbench's data path, the compute ceiling and the conventional
PIL pipeline, on the same model and batch), model FLOPs, and time-to-accuracy.

Every benchmark times the one training loop (:func:`sslbench.train.loop.pretrain`) and changes only
where the views come from, so the figures compare data paths and nothing else.
"""
