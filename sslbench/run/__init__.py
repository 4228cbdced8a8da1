"""A run from start to finish: record it, train, evaluate, and always leave it in a final state.

Read top to bottom, each module uses only the ones before it:

- :mod:`.lifecycle`: the run's row (:func:`~.lifecycle.create_run`), its heartbeat and final
  status (:func:`~.lifecycle.recording`), the :class:`~.lifecycle.RunContext` that carries the
  store, run id, config, dataset, device and echo through a run;
- :mod:`.monitor`: the per-epoch monitor (diagnostics, online kNN, collapse);
- :mod:`.evaluate`: the evaluation protocols recorded as child runs, re-evaluating a finished
  run from its checkpoint, and the supervised baseline;
- :mod:`.pretrain`: ``sslbench pretrain`` (and ``resume``): load the data once, build the method
  once, check, record, train, evaluate; distributed runs through :mod:`sslbench.distributed`.
"""
