"""Distributed data-parallel training, in four modules by concern:

- :mod:`.collectives`: rank queries, :func:`gather` and :func:`shard` (what methods import);
- :mod:`.batchnorm`: :class:`GlobalBatchNorm`, BatchNorm over the global batch;
- :mod:`.ddp`: the training step wrapped in DistributedDataParallel (what the loop calls);
- :mod:`.launch`: starting the workers (elastic launch, ``torchrun``) and reporting failures.

This package's ``__init__`` imports nothing (the CLI reads :data:`DEFAULT_MASTER_PORT` from it
without loading torch), so importing one part never loads the others.

How a run is split across W workers (W = nodes × processes per node):

- **Launch.** ``--gpus N`` (NCCL, one process per GPU) or ``--procs N`` (CPU, gloo) starts the
  workers through torch's elastic launcher (:func:`.launch.launch`, the engine behind ``torchrun``);
  several nodes rendezvous at ``--master-addr:--master-port`` (static rendezvous, the node's rank
  from ``--node-rank``). ``torchrun -m sslbench pretrain ...`` works too: a process that finds
  the launcher's environment (``RANK``, ``WORLD_SIZE``) is a worker
  (:func:`.launch.launched_worker`).
- **Batch.** ``train.batch_size`` is the global batch B; each rank takes B / W images of it.
  Every epoch one permutation, the same on every rank (drawn from the seed), orders the training
  images; step i's global batch is its slice [iB, (i+1)B) and rank r takes the r-th contiguous
  part (:func:`.collectives.shard`). The ranks' shards are disjoint and together they are
  exactly the batch a single process would take, so the learning-rate rule
  (``optimizer.lr_scaling``) depends on B only, never on W.
- **Gradients.** Every loss that needs the global batch gathers its embeddings with
  ``gather`` (``torch.distributed.nn.functional.all_gather``: gradients flow back to the rank
  that made each row) and evaluates the loss of the global batch, identical on every rank.
  The gather's backward sums the W ranks' gradients and DistributedDataParallel averages them
  (divides by W): the step equals the single-process step on the concatenated batch. Do not
  multiply the loss by W as well (the "scaled twice" bug). Per-sample losses (BYOL, SimSiam)
  need no gather: the mean over ranks of the per-rank means is the global mean.
- **BatchNorm.** ``convert_batchnorm`` swaps every BatchNorm for ``GlobalBatchNorm``,
  whose statistics are those of the global batch (the "global BN" of SimCLR, §2.2, and the
  SyncBatchNorm of the BYOL / Barlow Twins / VICReg / SwAV / SimSiam / MoCo v3 reference code).
  It works with gloo on the CPU, which ``torch.nn.SyncBatchNorm`` does not, so the same code is
  tested here and runs on GPUs; its state dict is a BatchNorm's.
- **State.** Only rank 0 writes to the store, prints and saves checkpoints (of the unwrapped
  method: they load at any world size).
"""

DEFAULT_MASTER_PORT = 29500  # where the workers of a multi-node run meet (torchrun's default)
